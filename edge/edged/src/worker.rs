//! The per-pod worker: an explicit state machine ([`step`]) and the async task that interprets
//! its effects against the CRI runtime and the bus.
//!
//! ```text
//!  Spec ──► Active ──(Observed: reconcile)──► RunSandbox / StartContainer / Remove… / Report
//!              │  ▲                                    │
//!              │  └──────── Changed / Tick ◄───────────┘   (Tick every relist period)
//!   Delete /   ▼
//!   deletionTimestamp ──► Terminating ──(Killed)──► Terminated ──(forgotten)──► Exit
//! ```
//! Back-off is data of `Active` (per container and for the sandbox): a container or sandbox whose
//! next attempt is not due is left alone and reported `CrashLoopBackOff` until a later tick.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ke_beehive::Beehive;
use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_cri::{CriClient, api};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::pod::{self, CState, ContainerObs, NodeContext, Observation, PodId, SandboxObs, StatusInputs};
use crate::probe;

/// Exponential back-off: `base`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffPolicy {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

/// One back-off track: the delay used last and when the next attempt is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    delay: Duration,
    not_before: Instant,
}

impl Backoff {
    fn due(b: Option<&Self>, now: Instant) -> bool {
        b.is_none_or(|b| now >= b.not_before)
    }

    /// Records an attempt at `now`: the first is free, each later one waits twice as long.
    fn next(b: Option<&Self>, p: BackoffPolicy, now: Instant) -> Self {
        let delay = match b {
            None => p.base,
            Some(b) => (b.delay * 2).min(p.max),
        };
        Self {
            delay,
            not_before: now + delay,
        }
    }
}

/// Lifecycle phase of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reconciling the runtime towards the spec.
    Active,
    /// Killing everything of the pod.
    Terminating,
    /// Killed; final status reported; waiting for the pod to be forgotten.
    Terminated,
}

/// Everything a worker knows.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) pod: k8s::Pod,
    pub(crate) phase: Phase,
    /// The pod was deleted (not just marked): exit after the kill.
    forget: bool,
    obs: Option<Observation>,
    container_backoff: HashMap<String, Backoff>,
    sandbox_backoff: Option<Backoff>,
    /// Last failure that keeps the pod from starting.
    error: Option<String>,
    start_time: Option<Time>,
    last_report: Option<k8s::PodStatus>,
    /// Effects are running: observations are requested again when they finish.
    policy: BackoffPolicy,
    /// Probe state per (container name, probe kind).
    probes: HashMap<(String, probe::Kind), probe::Track>,
}

impl State {
    pub(crate) fn new(pod: k8s::Pod, policy: BackoffPolicy) -> Self {
        Self {
            pod,
            phase: Phase::Active,
            forget: false,
            obs: None,
            container_backoff: HashMap::new(),
            sandbox_backoff: None,
            error: None,
            start_time: None,
            last_report: None,
            policy,
            probes: HashMap::new(),
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// The pod was inserted or updated.
    Spec(Box<k8s::Pod>),
    /// The pod was deleted.
    Delete,
    /// Periodic relist.
    Tick,
    /// A runtime action completed: look again.
    Changed,
    /// What the runtime holds for the pod.
    Observed(Observation),
    /// An action failed; `sandbox` when it was creating the sandbox, else the container name.
    Failed { what: Failure, error: String },
    /// Everything of the pod is gone.
    Killed,
    /// ConfigMap or Secret `<namespace>/<kind>/<name>` changed: refresh the volumes reading it.
    /// Handled by the worker loop, never by [`step`].
    ObjectChanged {
        namespace: String,
        kind: String,
        name: String,
    },
    /// The status report did not reach metaManager: send it again next time.
    ReportFailed,
    /// A probe ran against container instance `container_id`.
    Probed {
        container: String,
        kind: probe::Kind,
        container_id: String,
        result: Result<(), String>,
    },
}

/// Which action failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Inspect,
    Sandbox,
    Container(String),
    Kill,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// List the pod's sandboxes and containers → `Observed`.
    Inspect,
    /// Stop and remove these sandboxes (and their containers, and the pod cgroup).
    RemoveSandboxes(Vec<String>),
    /// `RunPodSandbox` → `Changed`.
    RunSandbox { attempt: u32 },
    /// Ensure the image, `CreateContainer`, `StartContainer` → `Changed`.
    StartContainer { name: String, attempt: u32 },
    /// `StopContainer` (spec changed) → `Changed`.
    StopContainer { id: String },
    /// `RemoveContainer` each (superseded dead containers).
    RemoveContainers(Vec<String>),
    /// Stop and remove everything of the pod → `Killed`.
    Kill,
    /// `update` `<ns>/podstatus/<name>` to metaManager.
    Report(Box<k8s::PodStatus>),
    /// Run a probe → `Probed`.
    Probe {
        container: String,
        kind: probe::Kind,
        probe: Box<k8s::Probe>,
        target: probe::Target,
    },
    /// The worker is done.
    Exit,
}

/// Wall-clock and monotonic "now", passed in so that [`step`] stays pure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) mono: Instant,
    pub(crate) wall: Timestamp,
}

/// The state machine: one event in, the next state and the effects to run out.
pub(crate) fn step(mut s: State, ev: Event, ctx: &NodeContext, now: Now) -> (State, Vec<Effect>) {
    match (s.phase, ev) {
        (Phase::Active, Event::Spec(p)) => {
            let deleting = pod::is_deleting(&p);
            s.pod = *p;
            if deleting {
                s.phase = Phase::Terminating;
                (s, vec![Effect::Kill])
            } else {
                (s, vec![Effect::Inspect])
            }
        }
        (Phase::Terminating | Phase::Terminated, Event::Spec(p)) => {
            s.pod = *p;
            (s, vec![])
        }
        (Phase::Active, Event::Delete) => {
            s.forget = true;
            s.phase = Phase::Terminating;
            (s, vec![Effect::Kill])
        }
        (Phase::Terminating, Event::Delete) => {
            s.forget = true;
            (s, vec![])
        }
        (Phase::Terminated, Event::Delete) => {
            s.forget = true;
            (s, vec![Effect::Exit])
        }
        (Phase::Active, Event::Tick | Event::Changed) => (s, vec![Effect::Inspect]),
        (Phase::Active, Event::Observed(obs)) => reconcile(s, obs, ctx, now),
        (
            Phase::Active,
            Event::Probed {
                container,
                kind,
                container_id,
                result,
            },
        ) => probed(s, ctx, now, container, kind, &container_id, result),
        (Phase::Active, Event::Failed { what, error }) => {
            match what {
                Failure::Sandbox => {
                    s.sandbox_backoff = Some(Backoff::next(s.sandbox_backoff.as_ref(), s.policy, now.mono));
                }
                Failure::Container(name) => {
                    let b = Backoff::next(s.container_backoff.get(&name), s.policy, now.mono);
                    s.container_backoff.insert(name, b);
                }
                Failure::Inspect | Failure::Kill => {}
            }
            s.error = Some(error);
            let eff = report_if_changed(&mut s, ctx, now, false, &[]);
            (s, eff)
        }
        (Phase::Terminating, Event::Killed) => {
            s.phase = Phase::Terminated;
            if s.forget {
                // Deleted for good: nobody wants a status of it any more.
                (s, vec![Effect::Exit])
            } else {
                // v1.2: a pod killed for its deletionTimestamp reports Succeeded/Completed; the
                // cloud then deletes it and we forget it.
                let eff = report_if_changed(&mut s, ctx, now, true, &[]);
                (s, eff)
            }
        }
        (
            Phase::Terminating,
            Event::Failed {
                what: Failure::Kill, ..
            },
        ) => (s, vec![Effect::Kill]),
        (_, Event::ReportFailed) => {
            s.last_report = None;
            (s, vec![])
        }
        // Everything else (late observations while terminating, ticks after the kill) is moot.
        (_, _) => (s, vec![]),
    }
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn reconcile(mut s: State, obs: Observation, ctx: &NodeContext, now: Now) -> (State, Vec<Effect>) {
    let mut effects = Vec::new();
    if s.start_time.is_none() {
        // The sandbox's creation time survives an edged restart; `now` is the fallback.
        s.start_time = obs
            .sandbox
            .as_ref()
            .and_then(|b| pod::time_of(b.created_at))
            .or(Some(Time(now.wall)));
    }
    let stale: Vec<String> = obs.stale.iter().map(|b| b.id.clone()).collect();
    if !stale.is_empty() {
        effects.push(Effect::RemoveSandboxes(stale));
    }
    let policy = pod::restart_policy(&s.pod).to_owned();
    match &obs.sandbox {
        None => {
            // A pod whose containers all finished for good keeps its sandbox down.
            let finished = s
                .last_report
                .as_ref()
                .and_then(|r| r.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            if !finished && Backoff::due(s.sandbox_backoff.as_ref(), now.mono) {
                let attempt = obs.stale.iter().map(|b| b.attempt + 1).max().unwrap_or(0);
                effects.push(Effect::RunSandbox { attempt });
            }
        }
        Some(_) => {
            s.sandbox_backoff = None;
            let mut dead = Vec::new();
            for spec in pod::containers(&s.pod) {
                // Superseded exited containers are the container GC's (`gc.rs`).
                let (cur, _) = obs.latest(&spec.name);
                let hash = pod::container_hash(spec);
                let due = Backoff::due(s.container_backoff.get(&spec.name), now.mono);
                match cur {
                    None => {
                        if due {
                            effects.push(Effect::StartContainer {
                                name: spec.name.clone(),
                                attempt: 0,
                            });
                        }
                    }
                    Some(c) if c.state == CState::Running && !c.hash.is_empty() && c.hash != hash => {
                        effects.push(Effect::StopContainer { id: c.id.clone() });
                    }
                    Some(c) if c.state == CState::Running => {}
                    Some(c) if c.state == CState::Exited => {
                        let changed = !c.hash.is_empty() && c.hash != hash;
                        // A changed spec restarts at once; a crash waits for its back-off.
                        if changed || (due && should_restart(&policy, c.exit_code)) {
                            if !changed {
                                let b =
                                    Backoff::next(s.container_backoff.get(&spec.name), s.policy, now.mono);
                                s.container_backoff.insert(spec.name.clone(), b);
                            }
                            effects.push(Effect::StartContainer {
                                name: spec.name.clone(),
                                attempt: c.attempt + 1,
                            });
                        }
                    }
                    Some(c) => {
                        // Created but never started (edged stopped in between), or unknown.
                        dead.push(c.id.clone());
                        effects.push(Effect::StartContainer {
                            name: spec.name.clone(),
                            attempt: c.attempt + 1,
                        });
                    }
                }
            }
            if !dead.is_empty() {
                effects.push(Effect::RemoveContainers(dead));
            }
            effects.extend(probe_effects(&mut s, &obs, ctx, now));
        }
    }
    let started_something = effects
        .iter()
        .any(|e| matches!(e, Effect::RunSandbox { .. } | Effect::StartContainer { .. }));
    if !started_something {
        s.error = None;
    }
    s.obs = Some(obs);
    let starting: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartContainer { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let starting: Vec<&str> = starting.iter().map(String::as_str).collect();
    effects.extend(report_if_changed(&mut s, ctx, now, false, &starting));
    (s, effects)
}

/// Due probes of the running containers; forgets the probe state of containers not running.
fn probe_effects(s: &mut State, obs: &Observation, ctx: &NodeContext, now: Now) -> Vec<Effect> {
    let mut effects = Vec::new();
    let pod_ip = if pod::host_network(&s.pod) {
        ctx.node_ip.clone()
    } else {
        obs.sandbox.as_ref().map(|b| b.ip.clone()).unwrap_or_default()
    };
    let now_nanos = now.wall.as_nanosecond();
    for spec in pod::containers(&s.pod) {
        let running = obs.latest(&spec.name).0.filter(|c| c.state == CState::Running);
        let Some(c) = running else {
            s.probes.retain(|(n, _), _| *n != spec.name);
            continue;
        };
        let started = passed(&s.probes, spec, c, probe::Kind::Startup);
        let running_for = Duration::from_nanos(
            u64::try_from(now_nanos.saturating_sub(i128::from(c.started_at)).max(0)).unwrap_or(0),
        );
        for kind in probe::Kind::ALL {
            let Some(p) = kind.of(spec) else { continue };
            // Startup gates the others, and is not probed once it passed.
            if (kind == probe::Kind::Startup) == started {
                continue;
            }
            let key = (spec.name.clone(), kind);
            let t = s
                .probes
                .entry(key)
                .or_insert_with(|| probe::Track::new(kind, p, &c.id, running_for, now.mono));
            if t.container_id != c.id {
                *t = probe::Track::new(kind, p, &c.id, running_for, now.mono);
            }
            if t.in_flight || now.mono < t.next_at {
                continue;
            }
            t.in_flight = true;
            t.next_at = now.mono + probe::period(p);
            effects.push(Effect::Probe {
                container: spec.name.clone(),
                kind,
                probe: Box::new(p.clone()),
                target: probe::Target {
                    container_id: c.id.clone(),
                    pod_ip: pod_ip.clone(),
                    ports: spec
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
                        .collect(),
                },
            });
        }
    }
    effects
}

/// Whether container instance `c` passed its `kind` probe (true without such a probe).
fn passed(
    probes: &HashMap<(String, probe::Kind), probe::Track>,
    spec: &k8s::Container,
    c: &ContainerObs,
    kind: probe::Kind,
) -> bool {
    kind.of(spec).is_none()
        || probes
            .get(&(spec.name.clone(), kind))
            .is_some_and(|t| t.container_id == c.id && t.result)
}

/// A probe result: a failed liveness or startup probe stops the container (the restart policy
/// decides what follows); readiness changes the status.
fn probed(
    mut s: State,
    ctx: &NodeContext,
    now: Now,
    container: String,
    kind: probe::Kind,
    container_id: &str,
    result: Result<(), String>,
) -> (State, Vec<Effect>) {
    let Some(p) = pod::containers(&s.pod)
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| kind.of(c))
        .cloned()
    else {
        s.probes.remove(&(container, kind));
        return (s, vec![]);
    };
    let key = (container, kind);
    let Some(t) = s.probes.get_mut(&key).filter(|t| t.container_id == container_id) else {
        return (s, vec![]);
    };
    let flipped = t.record(&p, result.is_ok());
    let mut effects = Vec::new();
    if flipped && !t.result && kind != probe::Kind::Readiness {
        tracing::info!(container = %key.0, probe = ?kind, error = ?result.err(),
            "probe failed: killing the container");
        s.probes.retain(|(n, _), _| *n != key.0);
        effects.push(Effect::StopContainer {
            id: container_id.to_owned(),
        });
    }
    effects.extend(report_if_changed(&mut s, ctx, now, false, &[]));
    (s, effects)
}

fn report_if_changed(
    s: &mut State,
    ctx: &NodeContext,
    now: Now,
    killed: bool,
    starting: &[&str],
) -> Vec<Effect> {
    let obs = s.obs.clone().unwrap_or_default();
    let backing_off: BTreeMap<&str, String> = pod::containers(&s.pod)
        .iter()
        .filter(|c| !starting.contains(&c.name.as_str()))
        .filter(|c| !Backoff::due(s.container_backoff.get(&c.name), now.mono))
        .filter(|c| obs.latest(&c.name).0.is_some_and(|o| o.state == CState::Exited))
        .map(|c| {
            let secs = s.container_backoff.get(&c.name).map_or(0, |b| b.delay.as_secs());
            (
                c.name.as_str(),
                format!("back-off {secs}s restarting failed container={}", c.name),
            )
        })
        .collect();
    let unready = pod::containers(&s.pod)
        .iter()
        .filter_map(|spec| {
            let c = obs.latest(&spec.name).0?;
            let started = passed(&s.probes, spec, c, probe::Kind::Startup);
            let ready = started && passed(&s.probes, spec, c, probe::Kind::Readiness);
            (!ready).then(|| (spec.name.clone(), started))
        })
        .collect();
    let inp = StatusInputs {
        backing_off,
        unready,
        error: s.error.clone(),
        start_time: s.start_time.clone(),
        killed,
    };
    let mut st = pod::pod_status(ctx, &s.pod, &obs, &inp);
    pod::carry_transition_times(s.last_report.as_ref(), &mut st, &Time(now.wall));
    if s.last_report.as_ref() == Some(&st) {
        return vec![];
    }
    s.last_report = Some(st.clone());
    vec![Effect::Report(Box::new(st))]
}

// ---------------------------------------------------------------------------------------------
// The interpreter.

/// What a worker task needs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEnv {
    pub(crate) cri: CriClient,
    pub(crate) hive: Beehive,
    pub(crate) ctx: NodeContext,
    pub(crate) relist: Duration,
    pub(crate) report_timeout: Duration,
    /// What `/pods` serves.
    pub(crate) pods: crate::http::PodTable,
    /// edged's root directory (pod volumes).
    pub(crate) root: std::path::PathBuf,
    /// How often configMap/secret/downwardAPI volumes are rewritten from their sources.
    pub(crate) volume_resync: Duration,
}

/// Runs one pod until it is forgotten or `cancel` fires (shutdown leaves its containers running).
pub(crate) async fn run(
    env: WorkerEnv,
    pod: k8s::Pod,
    policy: BackoffPolicy,
    mut inbox: mpsc::Receiver<Event>,
    cancel: CancellationToken,
) {
    let id = PodId::of(&pod);
    let mut state = State::new(pod, policy);
    let mut queue: VecDeque<Event> = VecDeque::from([Event::Changed]);
    let mut ticker = tokio::time::interval(env.relist);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let resync_every = env.volume_resync.max(Duration::from_millis(100));
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + resync_every, resync_every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ev = match queue.pop_front() {
            Some(ev) => ev,
            None => tokio::select! {
                () = cancel.cancelled() => return,
                ev = inbox.recv() => match ev { Some(ev) => ev, None => Event::Delete },
                _ = ticker.tick() => Event::Tick,
                _ = resync.tick() => {
                    Box::pin(refresh_volumes(&env, &state.pod)).await;
                    continue;
                }
            },
        };
        if cancel.is_cancelled() {
            return;
        }
        if let Event::ObjectChanged {
            namespace,
            kind,
            name,
        } = &ev
        {
            if crate::volume::mounts_object(&state.pod, namespace, kind, name) {
                Box::pin(refresh_volumes(&env, &state.pod)).await;
            }
            continue;
        }
        // Labels and annotations reach downwardAPI volumes as soon as the pod update arrives.
        let spec_changed = matches!(ev, Event::Spec(_));
        let now = Now {
            mono: Instant::now(),
            wall: wall_now(),
        };
        let (next, effects) = step(state, ev, &env.ctx, now);
        state = next;
        if spec_changed && !pod::is_deleting(&state.pod) {
            Box::pin(refresh_volumes(&env, &state.pod)).await;
        }
        for eff in effects {
            if eff == Effect::Exit {
                tracing::info!(pod = %id.key(), "pod forgotten");
                env.pods.remove(&id.key(), &id.uid);
                return;
            }
            if let Effect::Report(st) = &eff {
                env.pods.set(&id.key(), &state.pod, st);
            }
            // Boxed: the effect futures (CRI calls, volume and env setup) are tens of KB, and
            // an idle worker — almost all of them, almost always — should not carry that space.
            if let Some(ev) = Box::pin(perform(&env, &state.pod, &id, eff)).await {
                let dup = matches!(ev, Event::Changed) && queue.iter().any(|e| matches!(e, Event::Changed));
                if !dup {
                    queue.push_back(ev);
                }
            }
        }
    }
}

pub(crate) fn wall_now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

async fn perform(env: &WorkerEnv, pod: &k8s::Pod, id: &PodId, eff: Effect) -> Option<Event> {
    let cri = &env.cri;
    match eff {
        Effect::Inspect => match inspect(cri, &env.ctx, &id.uid).await {
            Ok(obs) => Some(Event::Observed(obs)),
            Err(e) => {
                tracing::warn!(pod = %id.key(), %e, "cannot inspect the pod's containers");
                Some(Event::Failed {
                    what: Failure::Inspect,
                    error: e.to_string(),
                })
            }
        },
        Effect::RemoveSandboxes(ids) => {
            for sb in ids {
                remove_sandbox(cri, &sb).await;
            }
            // Only now the pod cgroup may be empty.
            if let Some(cg) = pod::cgroup_parent(&env.ctx, pod, &id.uid) {
                ke_cri::remove_pod_cgroup(&cg);
            }
            None
        }
        Effect::RunSandbox { attempt } => {
            let cfg = pod::sandbox_config(&env.ctx, pod, attempt);
            match cri.run_pod_sandbox(cfg).await {
                Ok(sb) => {
                    tracing::info!(pod = %id.key(), sandbox = %sb, "sandbox running");
                    Some(Event::Changed)
                }
                Err(e) => {
                    tracing::warn!(pod = %id.key(), %e, "cannot start the pod sandbox");
                    Some(Event::Failed {
                        what: Failure::Sandbox,
                        error: e.to_string(),
                    })
                }
            }
        }
        Effect::StartContainer { name, attempt } => match start_container(env, pod, &name, attempt).await {
            Ok(cid) => {
                tracing::info!(pod = %id.key(), container = %name, id = %cid, attempt, "container started");
                Some(Event::Changed)
            }
            Err(e) => {
                tracing::warn!(pod = %id.key(), container = %name, %e, "cannot start container");
                Some(Event::Failed {
                    what: Failure::Container(name),
                    error: e.to_string(),
                })
            }
        },
        Effect::StopContainer { id: cid } => {
            let grace = Duration::from_secs(pod::grace_seconds(pod));
            if let Err(e) = cri.stop_container(&cid, grace).await {
                tracing::warn!(pod = %id.key(), container = %cid, %e, "cannot stop container");
            }
            Some(Event::Changed)
        }
        Effect::RemoveContainers(ids) => {
            for cid in ids {
                if let Err(e) = cri.remove_container(&cid).await
                    && !e.is_not_found()
                {
                    tracing::warn!(pod = %id.key(), container = %cid, %e, "cannot remove container");
                }
            }
            None
        }
        Effect::Kill => match kill_pod(env, pod, id).await {
            Ok(()) => {
                tracing::info!(pod = %id.key(), "pod killed");
                Some(Event::Killed)
            }
            Err(e) => {
                tracing::warn!(pod = %id.key(), %e, "cannot kill the pod; retrying");
                tokio::time::sleep(env.relist).await;
                Some(Event::Failed {
                    what: Failure::Kill,
                    error: e.to_string(),
                })
            }
        },
        Effect::Report(status) => {
            let content = serde_json::json!({"UID": id.uid, "Name": id.name, "Status": status});
            let resource = format!("{}/podstatus/{}", id.namespace, id.name);
            let msg = Message::new(module::EDGED, group::META, op::UPDATE, resource, content);
            match env
                .hive
                .send_sync(module::META_MANAGER, msg, env.report_timeout)
                .await
            {
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(pod = %id.key(), %e, "pod status not delivered to metaManager");
                    Some(Event::ReportFailed)
                }
            }
        }
        Effect::Probe {
            container,
            kind,
            probe,
            target,
        } => {
            let result = probe::run(cri, &probe, &target).await;
            if let Err(e) = &result {
                tracing::debug!(pod = %id.key(), %container, probe = ?kind, error = %e, "probe failed");
            }
            Some(Event::Probed {
                container,
                kind,
                container_id: target.container_id,
                result,
            })
        }
        Effect::Exit => None,
    }
}

fn uid_filter(uid: &str, node: &str) -> HashMap<String, String> {
    HashMap::from([
        (pod::LABEL_POD_UID.to_owned(), uid.to_owned()),
        (pod::LABEL_NODE.to_owned(), node.to_owned()),
    ])
}

/// Lists the pod's sandboxes and the containers of its newest ready one.
async fn inspect(cri: &CriClient, ctx: &NodeContext, uid: &str) -> ke_cri::Result<Observation> {
    let mut sandboxes = cri
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: uid_filter(uid, &ctx.node_name),
            ..Default::default()
        }))
        .await?;
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let mut obs = Observation::default();
    for sb in sandboxes {
        let ready = sb.state == api::PodSandboxState::SandboxReady as i32;
        let attempt = sb.metadata.as_ref().map_or(0, |m| m.attempt);
        let o = SandboxObs {
            id: sb.id.clone(),
            ready,
            attempt,
            ip: String::new(),
            created_at: sb.created_at,
        };
        if ready && obs.sandbox.is_none() {
            obs.sandbox = Some(o);
        } else {
            obs.stale.push(o);
        }
    }
    if let Some(sb) = obs.sandbox.as_mut() {
        let st = cri.pod_sandbox_status(&sb.id).await?;
        sb.ip = st.network.map(|n| n.ip).unwrap_or_default();
        let list = cri
            .list_containers(Some(api::ContainerFilter {
                pod_sandbox_id: sb.id.clone(),
                ..Default::default()
            }))
            .await?;
        for c in list {
            match cri.container_status(&c.id).await {
                Ok(cs) => obs.containers.push(ContainerObs::from_status(&cs, &sb.id)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(obs)
}

/// Pulls `image` unless the runtime has it (a pull of a local tag still contacts the registry),
/// with the pod's image pull secrets for that registry, tried in turn, else anonymously.
async fn ensure_image(env: &WorkerEnv, pod: &k8s::Pod, image: &str) -> crate::Result<()> {
    if env.cri.image_status(image).await?.is_some() {
        return Ok(());
    }
    let auths = crate::pull_secrets::auths_for(&env.hive, pod, image, env.report_timeout).await;
    tracing::info!(image, credentials = auths.len(), "image not present; pulling");
    if auths.is_empty() {
        env.cri.pull_image(image).await?;
        return Ok(());
    }
    let mut last = None;
    for auth in auths {
        match env.cri.pull_image_with_auth(image, Some(auth)).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || crate::Error::Config(format!("cannot pull {image}")),
        Into::into,
    ))
}

async fn start_container(env: &WorkerEnv, pod: &k8s::Pod, name: &str, attempt: u32) -> crate::Result<String> {
    let spec = pod::containers(pod)
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| crate::Error::Config(format!("container {name} is not in the pod spec")))?;
    let image = spec.image.clone().unwrap_or_default();
    ensure_image(env, pod, &image).await?;
    // The sandbox to create in: the newest ready one of the pod.
    let id = PodId::of(pod);
    let obs = inspect(&env.cri, &env.ctx, &id.uid).await?;
    let sb = obs.sandbox.ok_or_else(|| {
        crate::Error::Config(format!(
            "pod {} has no ready sandbox for container {name}",
            id.key()
        ))
    })?;
    let sb_cfg = pod::sandbox_config(&env.ctx, pod, sb.attempt);
    let pod_ip = if pod::host_network(pod) {
        env.ctx.node_ip.as_str()
    } else {
        sb.ip.as_str()
    };
    let (node_milli_cpu, node_memory) = node_capacity(pod, spec);
    let downward = crate::env::Downward {
        pod_ip,
        host_ip: &env.ctx.node_ip,
        node_name: &env.ctx.node_name,
        node_milli_cpu,
        node_memory,
    };
    let vols = crate::volume::prepare(&env.hive, &env.root, pod, &downward, env.report_timeout).await?;
    let mut cfg = pod::container_config(&env.ctx, pod, spec, attempt);
    cfg.mounts = crate::volume::mounts(pod, spec, &vols)?;
    cfg.envs = crate::env::resolve(&env.hive, pod, spec, &downward, env.report_timeout).await?;
    (cfg.command, cfg.args) = crate::env::expand_command(spec, &cfg.envs);
    let cid = env.cri.create_container(&sb.id, cfg, sb_cfg).await?;
    if let Err(e) = env.cri.start_container(&cid).await {
        let _ = env.cri.remove_container(&cid).await;
        return Err(e.into());
    }
    Ok(cid)
}

/// Rewrites the pod's configMap/secret/downwardAPI volumes from their current sources (only
/// once they were set up by a container start); a failure keeps the old contents.
async fn refresh_volumes(env: &WorkerEnv, pod: &k8s::Pod) {
    let (node_milli_cpu, node_memory) = pod::containers(pod)
        .first()
        .map_or((0, 0), |c| node_capacity(pod, c));
    let downward = crate::env::Downward {
        pod_ip: "",
        host_ip: &env.ctx.node_ip,
        node_name: &env.ctx.node_name,
        node_milli_cpu,
        node_memory,
    };
    if let Err(e) = crate::volume::refresh(&env.hive, &env.root, pod, &downward, env.report_timeout).await {
        tracing::warn!(pod = %PodId::of(pod).key(), %e, "volume not refreshed; old contents kept");
    }
}

/// (milli-CPU, memory bytes) of the node, read only when `c` or a downwardAPI volume of `pod` has
/// a `resourceFieldRef` (what an unset limit means there).
fn node_capacity(pod: &k8s::Pod, c: &k8s::Container) -> (i64, i64) {
    let wanted = c.env.iter().flatten().any(|e| {
        e.value_from
            .as_ref()
            .is_some_and(|f| f.resource_field_ref.is_some())
    }) || crate::volume::wants_resources(pod);
    if !wanted {
        return (0, 0);
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = i64::try_from(crate::node::cpus_of(&read("/proc/cpuinfo"))).unwrap_or(i64::MAX);
    let mem = crate::node::mem_total_kib_of(&read("/proc/meminfo"))
        .and_then(|k| i64::try_from(k.saturating_mul(1024)).ok())
        .unwrap_or(0);
    (cpus.saturating_mul(1000), mem)
}

async fn remove_sandbox(cri: &CriClient, id: &str) {
    if let Err(e) = cri.stop_pod_sandbox(id).await
        && !e.is_not_found()
    {
        tracing::warn!(sandbox = %id, %e, "cannot stop sandbox");
    }
    if let Err(e) = cri.remove_pod_sandbox(id).await
        && !e.is_not_found()
    {
        tracing::warn!(sandbox = %id, %e, "cannot remove sandbox");
    }
}

/// Stops every container (with the pod's grace period), then stops and removes the sandboxes,
/// the pod cgroup and the pod's log directory.
pub(crate) async fn kill_pod(env: &WorkerEnv, pod: &k8s::Pod, id: &PodId) -> crate::Result<()> {
    let cri = &env.cri;
    let grace = Duration::from_secs(pod::grace_seconds(pod));
    let containers = cri
        .list_containers(Some(api::ContainerFilter {
            label_selector: uid_filter(&id.uid, &env.ctx.node_name),
            ..Default::default()
        }))
        .await?;
    for c in &containers {
        if c.state == api::ContainerState::ContainerRunning as i32
            && let Err(e) = cri.stop_container(&c.id, grace).await
            && !e.is_not_found()
        {
            return Err(e.into());
        }
    }
    for c in &containers {
        if let Err(e) = cri.remove_container(&c.id).await
            && !e.is_not_found()
        {
            return Err(e.into());
        }
    }
    let sandboxes = cri
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: uid_filter(&id.uid, &env.ctx.node_name),
            ..Default::default()
        }))
        .await?;
    for sb in &sandboxes {
        cri.stop_pod_sandbox(&sb.id).await.or_else(ignore_not_found)?;
        cri.remove_pod_sandbox(&sb.id).await.or_else(ignore_not_found)?;
    }
    if let Some(cg) = pod::cgroup_parent(&env.ctx, pod, &id.uid) {
        ke_cri::remove_pod_cgroup(&cg);
    }
    let dir = crate::volume::pod_dir(&env.root, &id.uid);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %e, "pod directory not removed");
    }
    let logs = pod::log_directory(&env.ctx, id);
    if let Err(e) = tokio::fs::remove_dir_all(&logs).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(dir = %logs, %e, "pod log directory not removed");
    }
    Ok(())
}

fn ignore_not_found(e: ke_cri::Error) -> ke_cri::Result<()> {
    if e.is_not_found() { Ok(()) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> NodeContext {
        NodeContext {
            node_name: "edge-1".into(),
            node_ip: "192.0.2.10".into(),
            cgroup_root: Some("/kubepods".into()),
            log_root: "/var/log/pods".into(),
        }
    }

    fn pod(policy: &str) -> k8s::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    const POLICY: BackoffPolicy = BackoffPolicy {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    fn now(at: Instant) -> Now {
        Now {
            mono: at,
            wall: Timestamp::from_second(1_700_000_000).unwrap(),
        }
    }

    fn sandbox() -> Option<SandboxObs> {
        Some(SandboxObs {
            id: "sb".into(),
            ready: true,
            attempt: 0,
            ip: "10.88.0.9".into(),
            created_at: 0,
        })
    }

    fn exited(attempt: u32, exit: i32, hash: &str) -> ContainerObs {
        ContainerObs {
            id: format!("c{attempt}"),
            sandbox_id: "sb".into(),
            name: "c".into(),
            attempt,
            hash: hash.into(),
            state: CState::Exited,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            started_at: 0,
            finished_at: 0,
            image: "busybox".into(),
            image_ref: String::new(),
        }
    }

    fn kinds(e: &[Effect]) -> Vec<&'static str> {
        e.iter()
            .map(|e| match e {
                Effect::Inspect => "inspect",
                Effect::RemoveSandboxes(_) => "remove-sandboxes",
                Effect::RunSandbox { .. } => "run-sandbox",
                Effect::StartContainer { .. } => "start",
                Effect::StopContainer { .. } => "stop",
                Effect::RemoveContainers(_) => "remove-containers",
                Effect::Kill => "kill",
                Effect::Report(_) => "report",
                Effect::Probe { .. } => "probe",
                Effect::Exit => "exit",
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_pod_gets_sandbox_then_container() {
        let t0 = Instant::now();
        let s = State::new(pod("Always"), POLICY);
        let (s, e) = step(s, Event::Changed, &ctx(), now(t0));
        assert_eq!(kinds(&e), ["inspect"]);
        let (s, e) = step(s, Event::Observed(Observation::default()), &ctx(), now(t0));
        assert_eq!(kinds(&e), ["run-sandbox", "report"]);
        let obs = Observation {
            sandbox: sandbox(),
            ..Default::default()
        };
        let (_, e) = step(s, Event::Observed(obs), &ctx(), now(t0));
        assert_eq!(
            e[0],
            Effect::StartContainer {
                name: "c".into(),
                attempt: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn restart_always_backs_off() {
        let t0 = Instant::now();
        let s = State::new(pod("Always"), POLICY);
        let obs = |a| Observation {
            sandbox: sandbox(),
            containers: vec![exited(a, 1, "")],
            ..Default::default()
        };
        // First exit: restart at once.
        let (s, e) = step(s, Event::Observed(obs(0)), &ctx(), now(t0));
        assert_eq!(
            e[0],
            Effect::StartContainer {
                name: "c".into(),
                attempt: 1
            }
        );
        // Exits again within 10 s: wait, reported as CrashLoopBackOff.
        let (s, e) = step(
            s,
            Event::Observed(obs(1)),
            &ctx(),
            now(t0 + Duration::from_secs(1)),
        );
        assert_eq!(kinds(&e), ["report"]);
        let Effect::Report(st) = &e[0] else { unreachable!() };
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        // Due after 10 s; the next delay is 20 s.
        let (s, e) = step(
            s,
            Event::Observed(obs(1)),
            &ctx(),
            now(t0 + Duration::from_secs(10)),
        );
        assert_eq!(
            e[0],
            Effect::StartContainer {
                name: "c".into(),
                attempt: 2
            }
        );
        assert_eq!(s.container_backoff["c"].delay, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn restart_never_and_on_failure() {
        let t0 = Instant::now();
        for (policy, exit, restarts, phase) in [
            ("Never", 1, false, "Failed"),
            ("Never", 0, false, "Succeeded"),
            ("OnFailure", 0, false, "Succeeded"),
            ("OnFailure", 2, true, "Running"),
        ] {
            let s = State::new(pod(policy), POLICY);
            let obs = Observation {
                sandbox: sandbox(),
                containers: vec![exited(0, exit, "")],
                ..Default::default()
            };
            let (_, e) = step(s, Event::Observed(obs), &ctx(), now(t0));
            assert_eq!(kinds(&e).contains(&"start"), restarts, "{policy} exit {exit}");
            let Some(Effect::Report(st)) = e.last() else {
                panic!("no report")
            };
            assert_eq!(st.phase.as_deref(), Some(phase), "{policy} exit {exit}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn changed_spec_replaces_running_container() {
        let t0 = Instant::now();
        let s = State::new(pod("Always"), POLICY);
        let mut c = exited(0, 0, "old-hash");
        c.state = CState::Running;
        let obs = Observation {
            sandbox: sandbox(),
            containers: vec![c],
            ..Default::default()
        };
        let (_, e) = step(s, Event::Observed(obs), &ctx(), now(t0));
        assert_eq!(e[0], Effect::StopContainer { id: "c0".into() });
    }

    #[tokio::test(start_paused = true)]
    async fn deletion_paths() {
        let t0 = Instant::now();
        // Plain delete: kill, then exit without a report.
        let s = State::new(pod("Always"), POLICY);
        let (s, e) = step(s, Event::Delete, &ctx(), now(t0));
        assert_eq!(kinds(&e), ["kill"]);
        let (_, e) = step(s, Event::Killed, &ctx(), now(t0));
        assert_eq!(kinds(&e), ["exit"]);
        // deletionTimestamp: kill, report Succeeded, exit on the later delete.
        let mut p = pod("Always");
        p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let s = State::new(pod("Always"), POLICY);
        let (s, e) = step(s, Event::Spec(Box::new(p)), &ctx(), now(t0));
        assert_eq!(kinds(&e), ["kill"]);
        let (s, e) = step(s, Event::Tick, &ctx(), now(t0));
        assert!(e.is_empty());
        let (s, e) = step(s, Event::Killed, &ctx(), now(t0));
        let Some(Effect::Report(st)) = e.first() else {
            panic!("no report")
        };
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        let (_, e) = step(s, Event::Delete, &ctx(), now(t0));
        assert_eq!(kinds(&e), ["exit"]);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_sandboxes_are_removed_and_unchanged_status_not_resent() {
        let t0 = Instant::now();
        let s = State::new(pod("Always"), POLICY);
        let mut c = exited(0, 0, "");
        c.state = CState::Running;
        let obs = Observation {
            sandbox: sandbox(),
            stale: vec![SandboxObs {
                id: "old".into(),
                ready: false,
                attempt: 0,
                ip: String::new(),
                created_at: 0,
            }],
            containers: vec![c],
        };
        let (s, e) = step(s, Event::Observed(obs.clone()), &ctx(), now(t0));
        assert_eq!(kinds(&e), ["remove-sandboxes", "report"]);
        let obs = Observation { stale: vec![], ..obs };
        let (_, e) = step(s, Event::Observed(obs), &ctx(), now(t0 + Duration::from_secs(5)));
        assert!(e.is_empty(), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn probes_gate_readiness_and_kill_on_liveness() {
        let t0 = Instant::now();
        let mut p = pod("Always");
        p.spec.as_mut().unwrap().containers[0].readiness_probe = Some(
            serde_json::from_value(
                serde_json::json!({"exec": {"command": ["cat", "/ready"]}, "failureThreshold": 1}),
            )
            .unwrap(),
        );
        p.spec.as_mut().unwrap().containers[0].liveness_probe = Some(
            serde_json::from_value(
                serde_json::json!({"exec": {"command": ["false"]}, "failureThreshold": 1}),
            )
            .unwrap(),
        );
        let mut c = exited(0, 0, "");
        c.state = CState::Running;
        let obs = Observation {
            sandbox: sandbox(),
            containers: vec![c],
            ..Default::default()
        };
        let s = State::new(p, POLICY);
        let (s, e) = step(s, Event::Observed(obs.clone()), &ctx(), now(t0));
        assert_eq!(kinds(&e), ["probe", "probe", "report"]);
        let Some(Effect::Report(st)) = e.last() else {
            unreachable!()
        };
        assert!(!st.container_statuses.as_ref().unwrap()[0].ready);
        // Probes in flight are not started twice.
        let (s, e) = step(s, Event::Observed(obs.clone()), &ctx(), now(t0));
        assert!(e.is_empty(), "{e:?}");
        let probed = |kind, ok: bool| Event::Probed {
            container: "c".into(),
            kind,
            container_id: "c0".into(),
            result: if ok { Ok(()) } else { Err("no".into()) },
        };
        let (s, e) = step(s, probed(probe::Kind::Readiness, true), &ctx(), now(t0));
        let Some(Effect::Report(st)) = e.last() else {
            panic!("{e:?}")
        };
        assert!(st.container_statuses.as_ref().unwrap()[0].ready);
        let (_, e) = step(s, probed(probe::Kind::Liveness, false), &ctx(), now(t0));
        assert_eq!(e[0], Effect::StopContainer { id: "c0".into() });
    }
}
