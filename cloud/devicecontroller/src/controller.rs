//! The controller loop: one task owns the Device/DeviceModel cache, merges both watches and the
//! edge messages into one stream, and handles them in order (so no locks are needed). Writing
//! reported twins (`edge_updated`) is the one slow path: it runs on per-device lanes, at most
//! `load.updateDeviceStatusWorkers` at a time, each device's reports in arrival order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cloudhub::CloudHub;
use edgecontroller::downstream::send_counted;
use edgecontroller::kubeclient::watch;
use edgecontroller::tracker::{Change, Tracker, ns_name};
use futures_util::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ke_core::Message;
use ke_core::message::now_millis;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crd::{Device, DeviceModel, Twin, TwinProperty};
use crate::messages::{self, TwinUpdate};
use crate::profile;
use crate::{Error, Result};

enum Ev {
    Device(Box<Event<Device>>),
    Model(Box<Event<DeviceModel>>),
    Edge(Box<Message>),
}

/// The running controller.
pub struct DeviceController {
    client: Client,
    hub: CloudHub,
    metrics: cloudhub::metrics::ControllerHandle,
    devices: Tracker<Device, Device>,
    models: Tracker<DeviceModel, DeviceModel>,
    /// (namespace, node) → profile text last written (`None`: ConfigMap deleted).
    written: HashMap<(String, String), Option<String>>,
    /// The first Device list is complete: membership details can be answered.
    devices_listed: bool,
    /// `membership/detail` requests waiting for the first list.
    waiting: Vec<Message>,
    /// `<ns>/<device>` → its lane of reported-twin writes.
    report_lanes: HashMap<String, mpsc::Sender<ReportJob>>,
    /// `load.updateDeviceStatusWorkers` permits shared by the lanes.
    report_workers: Arc<Semaphore>,
}

type ReportJob = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl std::fmt::Debug for DeviceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceController")
            .field("devices_listed", &self.devices_listed)
            .finish_non_exhaustive()
    }
}

/// The desired side of the twins: what the edge must hear about when it changes.
fn desired(d: &Device) -> Vec<(&str, Option<&TwinProperty>)> {
    d.twins()
        .iter()
        .map(|t| (t.property_name.as_str(), t.desired.as_ref()))
        .collect()
}

/// `status.twins` with the reported values of an edge `update` applied; `None` if nothing changes.
pub fn apply_report(twins: &[Twin], update: &TwinUpdate) -> Option<Vec<Twin>> {
    let reports = update.twin.as_ref()?;
    let mut out = twins.to_vec();
    let mut changed = false;
    for t in &mut out {
        let Some(Some(m)) = reports.get(&t.property_name) else {
            continue;
        };
        let Some(actual) = &m.actual else { continue };
        let Some(value) = &actual.value else { continue };
        let mut metadata = BTreeMap::new();
        if let Some(md) = &actual.metadata {
            metadata.insert("timestamp".to_owned(), md.timestamp.to_string());
        }
        if let Some(k) = &m.metadata {
            metadata.insert("type".to_owned(), k.kind.clone());
        }
        let reported = Some(TwinProperty {
            value: value.clone(),
            metadata,
        });
        if t.reported != reported {
            t.reported = reported;
            changed = true;
        }
    }
    changed.then_some(out)
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { what, source }
}

impl DeviceController {
    /// Installs the CRDs if absent, then watches Devices and DeviceModels and handles the edge
    /// messages from `events` until `cancel` fires.
    pub async fn run(
        client: Client,
        hub: CloudHub,
        events: mpsc::Receiver<Message>,
        report_workers: usize,
        metrics: cloudhub::metrics::ControllerHandle,
        cancel: CancellationToken,
    ) {
        if let Err(e) = crate::crd::install(&client).await {
            metrics.error();
            warn!("devicecontroller: cannot install the device CRDs (watching anyway): {e}");
        }
        let ctl = Self {
            client,
            hub,
            metrics,
            devices: Tracker::new(ns_name, Device::clone),
            models: Tracker::new(ns_name, DeviceModel::clone),
            written: HashMap::new(),
            devices_listed: false,
            waiting: Vec::new(),
            report_lanes: HashMap::new(),
            report_workers: Arc::new(Semaphore::new(report_workers.max(1))),
        };
        tokio::select! {
            () = ctl.serve(events) => {}
            () = cancel.cancelled() => {}
        }
    }

    async fn serve(mut self, events: mpsc::Receiver<Message>) {
        let depth = self.metrics.clone();
        let edge = stream::unfold(events, move |mut rx| {
            let depth = depth.clone();
            async move {
                let m = rx.recv().await;
                depth.set_queue_depth(rx.len());
                m.map(|m| (Ev::Edge(Box::new(m)), rx))
            }
        })
        .boxed();
        let mut all = stream::select_all(vec![
            watch(&self.client, watcher::Config::default(), |e| {
                Ev::Device(Box::new(e))
            }),
            watch(&self.client, watcher::Config::default(), |e| {
                Ev::Model(Box::new(e))
            }),
            edge,
        ]);
        info!("devicecontroller: watching devices and device models");
        while let Some(ev) = all.next().await {
            self.metrics.event();
            match ev {
                Ev::Device(e) => {
                    let done = matches!(*e, Event::InitDone);
                    for ch in self.devices.step(*e) {
                        self.on_device(ch).await;
                    }
                    if done && !self.devices_listed {
                        self.devices_listed = true;
                        for m in std::mem::take(&mut self.waiting) {
                            self.answer_detail(&m);
                        }
                    }
                }
                Ev::Model(e) => {
                    for ch in self.models.step(*e) {
                        let (ns, model) = match &ch {
                            Change::Added(m) | Change::Modified { new: m, .. } => {
                                (m.namespace().unwrap_or_default(), m.name_any())
                            }
                            Change::Deleted { old, .. } => {
                                (old.namespace().unwrap_or_default(), old.name_any())
                            }
                        };
                        self.model_changed(&ns, &model).await;
                    }
                }
                Ev::Edge(m) => self.on_edge(&m).await,
            }
        }
    }

    fn send(&self, m: Message) {
        send_counted(&self.hub, &self.metrics, m);
    }

    // ---- Kubernetes → edge ---------------------------------------------------------------------

    async fn on_device(&mut self, ch: Change<Device, Device>) {
        match ch {
            Change::Added(d) => {
                let Some(node) = d.node() else { return };
                info!(device = %ns_name(&d), %node, "device bound");
                self.sync_profile(&d.namespace().unwrap_or_default(), node).await;
                self.send(messages::membership(
                    node,
                    vec![messages::msg_device(&d, now_millis())],
                    vec![],
                ));
            }
            Change::Modified { old, new } => {
                let ns = new.namespace().unwrap_or_default();
                match (old.node(), new.node()) {
                    (o, n) if o != n => {
                        if let Some(n) = n {
                            self.sync_profile(&ns, n).await;
                            self.send(messages::membership(
                                n,
                                vec![messages::msg_device(&new, now_millis())],
                                vec![],
                            ));
                        }
                        if let Some(o) = o {
                            self.sync_profile(&old.namespace().unwrap_or_default(), o).await;
                            self.send(messages::membership(
                                o,
                                vec![],
                                vec![messages::msg_device(&old, now_millis())],
                            ));
                        }
                    }
                    (_, Some(n)) => {
                        self.sync_profile(&ns, n).await;
                        if desired(&old) != desired(&new) {
                            self.send(messages::cloud_updated(n, &old, &new));
                        }
                    }
                    _ => {}
                }
            }
            Change::Deleted { old, obj, .. } => {
                let d = obj.unwrap_or(old);
                let Some(node) = d.node() else { return };
                info!(device = %ns_name(&d), %node, "device unbound");
                self.sync_profile(&d.namespace().unwrap_or_default(), node).await;
                self.send(messages::membership(
                    node,
                    vec![],
                    vec![messages::msg_device(&d, now_millis())],
                ));
            }
        }
    }

    async fn model_changed(&mut self, ns: &str, model: &str) {
        let mut targets: Vec<String> = self
            .devices
            .values()
            .filter(|d| d.namespace().as_deref() == Some(ns) && d.model() == model)
            .filter_map(|d| d.node().map(str::to_owned))
            .collect();
        targets.sort();
        targets.dedup();
        for node in targets {
            self.sync_profile(ns, &node).await;
        }
    }

    /// Brings `device-profile-config-<node>` in `ns` in line with the cache (written only when
    /// its text changes; deleted when no device is left).
    async fn sync_profile(&mut self, ns: &str, node: &str) {
        let mut devices: Vec<&Device> = self
            .devices
            .values()
            .filter(|d| d.namespace().as_deref() == Some(ns) && d.node() == Some(node))
            .collect();
        devices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let models = &self.models;
        let p = profile::build(devices, |m| models.get(&format!("{ns}/{m}")));
        let text = profile::render(&p);
        let key = (ns.to_owned(), node.to_owned());
        if self.written.get(&key) == Some(&text) {
            return;
        }
        match self.write_profile(ns, node, text.as_deref()).await {
            Ok(()) => {
                self.written.insert(key, text);
            }
            Err(e) => {
                self.metrics.error();
                warn!("device profile of node {node}: {e}");
            }
        }
    }

    async fn write_profile(&self, ns: &str, node: &str, text: Option<&str>) -> Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let name = profile::configmap_name(node);
        let what = |verb: &str| format!("{verb} configmap {ns}/{name}");
        let Some(text) = text else {
            return match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(api_err(what("delete"))(e)),
            };
        };
        let data = BTreeMap::from([(profile::DATA_KEY.to_owned(), text.to_owned())]);
        match api.get_opt(&name).await.map_err(api_err(what("get")))? {
            Some(mut cm) => {
                cm.data = Some(data);
                api.replace(&name, &PostParams::default(), &cm)
                    .await
                    .map_err(api_err(what("update")))?;
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.to_owned()),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                api.create(&PostParams::default(), &cm)
                    .await
                    .map_err(api_err(what("create")))?;
            }
        }
        Ok(())
    }

    // ---- edge → Kubernetes ---------------------------------------------------------------------

    async fn on_edge(&mut self, m: &Message) {
        let parts: Vec<&str> = m.resource().split('/').collect();
        let (node, rest) = match parts.as_slice() {
            ["node", node, rest @ ..] => (*node, rest),
            _ => {
                debug!(msg = %m, "edge message without node prefix dropped");
                return;
            }
        };
        match rest {
            ["membership", "detail"] => {
                if self.devices_listed {
                    self.answer_detail(m);
                } else {
                    self.waiting.push(m.clone());
                }
            }
            ["device", id, "twin", "edge_updated"] => self.report(node, id, m),
            ["device", id, "state"] => {
                debug!(%node, device = %id, state = %m.content_json_text(), "device state (no CRD field; confirmed)");
                self.send(messages::confirm(m));
            }
            _ => debug!(msg = %m, "no devicecontroller action; dropped"),
        }
    }

    fn answer_detail(&self, request: &Message) {
        let Some(node) = ke_core::resource::node_of(request.resource()) else {
            return;
        };
        let mut devices: Vec<&Device> = self.devices.values().filter(|d| d.node() == Some(node)).collect();
        devices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let now = now_millis();
        let list = devices.iter().map(|d| messages::msg_device(d, now)).collect();
        info!(%node, devices = devices.len(), "membership detail answered");
        self.send(messages::detail_reply(request, list));
    }

    /// Queues the write of an `edge_updated` message's reported values on the device's lane;
    /// the edge gets its confirmation once they are written (else it sends them again later).
    fn report(&mut self, node: &str, id: &str, m: &Message) {
        let Some(ns) = self
            .devices
            .values()
            .find(|d| d.metadata.name.as_deref() == Some(id) && d.node() == Some(node))
            .and_then(ResourceExt::namespace)
        else {
            debug!(%node, device = %id, "report for a device not bound to this node; dropped");
            return;
        };
        let (client, hub, metrics) = (self.client.clone(), self.hub.clone(), self.metrics.clone());
        let key = format!("{ns}/{id}");
        let (node, id, m) = (node.to_owned(), id.to_owned(), m.clone());
        let job: ReportJob = Box::pin(async move {
            match write_report(&client, &ns, &id, &m).await {
                Ok(()) => match hub.send(messages::confirm(&m)) {
                    Ok(_) => metrics.sent(),
                    Err(e) => {
                        metrics.error();
                        warn!(%node, device = %id, "cloudhub refused the confirmation: {e}");
                    }
                },
                Err(e) => {
                    metrics.error();
                    warn!(%node, device = %id, "reported twins not written: {e}");
                }
            }
        });
        let workers = self.report_workers.clone();
        let key_of_full_lane = key.clone();
        let lane = self.report_lanes.entry(key).or_insert_with(|| {
            let (tx, mut rx) = mpsc::channel::<ReportJob>(64);
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    let Ok(_permit) = workers.acquire().await else {
                        return;
                    };
                    job.await;
                }
            });
            tx
        });
        // A full lane (one device flooding reports) drops the report unconfirmed: the edge resends.
        if lane.try_send(job).is_err() {
            self.metrics.error();
            warn!(device = %key_of_full_lane, "report lane full; left for the edge to resend");
        }
    }
}

/// Writes the reported values of an `edge_updated` message into Device `ns/id`'s `status.twins`.
async fn write_report(client: &Client, ns: &str, id: &str, m: &Message) -> Result<()> {
    let update: TwinUpdate = serde_json::from_str(&m.content_json_text()).map_err(|e| Error::Content {
        resource: m.resource().to_owned(),
        reason: e.to_string(),
    })?;
    let api: Api<Device> = Api::namespaced(client.clone(), ns);
    let what = || format!("patch device {ns}/{id}");
    for _ in 0..5 {
        let Some(cur) = api
            .get_opt(id)
            .await
            .map_err(api_err(format!("get device {ns}/{id}")))?
        else {
            return Ok(());
        };
        let Some(twins) = apply_report(cur.twins(), &update) else {
            return Ok(());
        };
        let patch = json!({
            "metadata": {"resourceVersion": cur.metadata.resource_version},
            "status": {"twins": twins},
        });
        match api
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                debug!(device = %format!("{ns}/{id}"), "reported twins written");
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err(what())(e)),
        }
    }
    Err(Error::Content {
        resource: m.resource().to_owned(),
        reason: "the device kept changing (resource-version conflicts)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_fill_matching_twins_only() {
        let twins: Vec<Twin> = serde_json::from_value(json!([
            {"propertyName": "temp", "desired": {"value": "20"}},
            {"propertyName": "other", "desired": {"value": "x"}}
        ]))
        .unwrap();
        let update: TwinUpdate = serde_json::from_value(json!({
            "event_id": "e", "timestamp": 1,
            "twin": {
                "temp": {"actual": {"value": "25", "metadata": {"timestamp": 1700}}, "metadata": {"type": "string"},
                         "expected": {"value": "99"}},
                "unknown": {"actual": {"value": "1"}},
                "other": {"expected": {"value": "y"}}
            }
        }))
        .unwrap();
        let out = apply_report(&twins, &update).unwrap();
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!([
                {"propertyName": "temp", "desired": {"value": "20"},
                 "reported": {"value": "25", "metadata": {"timestamp": "1700", "type": "string"}}},
                {"propertyName": "other", "desired": {"value": "x"}}
            ])
        );
        assert_eq!(
            apply_report(&out, &update),
            None,
            "same report again changes nothing"
        );
    }
}
