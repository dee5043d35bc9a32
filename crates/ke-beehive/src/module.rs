//! Modules and their lifecycle: the [`Module`] trait and the [`Core`] that runs them.
//!
//! Lifecycle: [`Core::register`] every module (enabled ones get a mailbox at once, so no module
//! can send to a peer that is not registered yet), [`Core::start`] spawns them all on one
//! [`TaskTracker`], [`Core::shutdown`] cancels the shared [`CancellationToken`] and waits for every
//! module and every task they spawned on the tracker. A module that returns is cleaned up from the
//! bus.

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::bus::{Beehive, Mailbox};
use crate::error::Result;

/// A component that lives on the bus (edged, metaManager, cloudhub, …).
///
/// Implement `run` as `async fn run(self: Box<Self>, ctx: ModuleContext) { … }`; it must return
/// soon after `ctx.cancel` is cancelled.
pub trait Module: Send + 'static {
    /// Module name, unique in the process (a KubeEdge name from `ke_core::names::module`).
    fn name(&self) -> &str;
    /// Group the module belongs to (`ke_core::names::group`).
    fn group(&self) -> &str;
    /// Disabled modules are neither registered nor run; sends to them fail with
    /// [`Error::UnknownModule`](crate::Error::UnknownModule).
    fn enabled(&self) -> bool {
        true
    }
    /// The module's main loop.
    fn run(self: Box<Self>, ctx: ModuleContext) -> impl Future<Output = ()> + Send;
}

/// What a running module gets.
#[derive(Debug)]
pub struct ModuleContext {
    /// The bus, to send to other modules.
    pub beehive: Beehive,
    /// The module's own queue.
    pub mailbox: Mailbox,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// Spawn long-lived helper tasks here so that shutdown waits for them too.
    pub tracker: TaskTracker,
}

type BoxedRun = Pin<Box<dyn Future<Output = ()> + Send>>;
type Launch = Box<dyn FnOnce(ModuleContext) -> BoxedRun + Send>;

struct Prepared {
    name: String,
    launch: Launch,
    mailbox: Mailbox,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Runs modules: registration, start, graceful shutdown.
#[derive(Debug)]
pub struct Core {
    beehive: Beehive,
    cancel: CancellationToken,
    tracker: TaskTracker,
    prepared: Vec<Prepared>,
    started: bool,
}

/// Removes a module from the bus when its task ends, even by panic.
struct CleanupOnExit {
    beehive: Beehive,
    name: String,
    registration: u64,
}

impl Drop for CleanupOnExit {
    fn drop(&mut self) {
        self.beehive
            .cleanup_registration(&self.name, Some(self.registration));
    }
}

impl Core {
    /// A runner for modules on `beehive`.
    pub fn new(beehive: Beehive) -> Self {
        Self {
            beehive,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            prepared: Vec::new(),
            started: false,
        }
    }

    /// The bus.
    pub fn beehive(&self) -> &Beehive {
        &self.beehive
    }

    /// The token cancelled by [`shutdown`](Self::shutdown) (cancel it yourself to stop all
    /// modules, e.g. on a signal).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The tracker modules run on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Registers `module` on the bus if it is enabled and returns whether it was. Before
    /// [`start`](Self::start) it is only registered (it already receives messages); after, it is
    /// started at once. Fails with [`Error::DuplicateModule`](crate::Error::DuplicateModule).
    pub fn register<M: Module>(&mut self, module: M) -> Result<bool> {
        let name = module.name().to_owned();
        if !module.enabled() {
            tracing::info!(module = %name, group = module.group(), "module disabled; not registered");
            return Ok(false);
        }
        let mailbox = self.beehive.register(&name, module.group())?;
        let launch: Launch = Box::new(move |ctx| Box::pin(Box::new(module).run(ctx)));
        let prepared = Prepared {
            name,
            launch,
            mailbox,
        };
        if self.started {
            self.spawn(prepared);
        } else {
            self.prepared.push(prepared);
        }
        Ok(true)
    }

    /// Starts every registered module. Idempotent.
    pub fn start(&mut self) {
        self.started = true;
        for p in std::mem::take(&mut self.prepared) {
            self.spawn(p);
        }
    }

    fn spawn(&self, p: Prepared) {
        let Prepared {
            name,
            launch,
            mailbox,
        } = p;
        let guard = CleanupOnExit {
            beehive: self.beehive.clone(),
            name: name.clone(),
            registration: mailbox.registration(),
        };
        let ctx = ModuleContext {
            beehive: self.beehive.clone(),
            mailbox,
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
        };
        let cancel = self.cancel.clone();
        let span = tracing::info_span!("module", name = %name);
        self.tracker.spawn(
            async move {
                let _guard = guard;
                tracing::info!("module started");
                launch(ctx).await;
                if cancel.is_cancelled() {
                    tracing::info!("module stopped");
                } else {
                    tracing::warn!("module exited before shutdown");
                }
            }
            .instrument(span),
        );
    }

    /// Cancels every module, waits until they and the tasks they spawned on the tracker have
    /// finished, and cleans up modules that were registered but never started.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for p in std::mem::take(&mut self.prepared) {
            self.beehive
                .cleanup_registration(&p.name, Some(p.mailbox.registration()));
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ke_core::Message;
    use ke_core::names::{group, module, op};

    use super::*;
    use crate::Error;

    /// Answers sync requests with "OK", forwards `op::PUBLISH` messages to `forward_to`, records
    /// what it saw, and stops on cancellation.
    struct Echo {
        name: &'static str,
        group: &'static str,
        enabled: bool,
        forward_to: Option<&'static str>,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Echo {
        fn new(name: &'static str, group: &'static str) -> Self {
            Self {
                name,
                group,
                enabled: true,
                forward_to: None,
                seen: Arc::default(),
            }
        }
    }

    impl Module for Echo {
        fn name(&self) -> &str {
            self.name
        }
        fn group(&self) -> &str {
            self.group
        }
        fn enabled(&self) -> bool {
            self.enabled
        }
        async fn run(self: Box<Self>, ctx: ModuleContext) {
            let ModuleContext {
                beehive,
                mut mailbox,
                cancel,
                tracker,
            } = ctx;
            // A helper task on the tracker: shutdown must wait for it as well.
            let helper_cancel = cancel.clone();
            let seen = Arc::clone(&self.seen);
            tracker.spawn(async move {
                helper_cancel.cancelled().await;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push("helper stopped".into());
            });
            while let Some(msg) = mailbox.recv_until(&cancel).await {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(msg.route.resource.clone());
                if msg.header.sync {
                    let _ = beehive.send_resp(msg.ack());
                } else if let (Some(to), true) = (self.forward_to, msg.operation() == op::PUBLISH) {
                    let _ = beehive.send(to, msg).await;
                }
            }
        }
    }

    fn msg(operation: &str, resource: &str) -> Message {
        Message::new(module::EDGEHUB, group::META, operation, resource, "x")
    }

    #[tokio::test]
    async fn core_registers_enabled_modules_before_start_and_shuts_down() {
        let hive = Beehive::default();
        let mut core = Core::new(hive.clone());
        let mut meta = Echo::new(module::META_MANAGER, group::META);
        meta.forward_to = Some(module::EDGED);
        let meta_seen = Arc::clone(&meta.seen);
        let edged = Echo::new(module::EDGED, group::EDGED);
        let edged_seen = Arc::clone(&edged.seen);
        let mut mesh = Echo::new(module::EDGEMESH, group::MESH);
        mesh.enabled = false;

        assert_eq!(core.register(meta), Ok(true));
        assert_eq!(core.register(edged), Ok(true));
        assert_eq!(core.register(mesh), Ok(false));
        assert_eq!(
            core.register(Echo::new(module::EDGED, group::EDGED)),
            Err(Error::DuplicateModule {
                module: module::EDGED.into()
            })
        );
        // Registered before start: a message sent now waits in the queue.
        hive.send(module::META_MANAGER, msg(op::PUBLISH, "early"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Disabled: not registered, sends fail.
        assert!(matches!(
            hive.send(module::EDGEMESH, msg(op::UPDATE, "x")).await,
            Err(Error::UnknownModule { .. })
        ));
        assert!(matches!(
            hive.send_to_group(group::MESH, msg(op::UPDATE, "x")).await,
            Err(Error::UnknownGroup { .. })
        ));

        core.start();
        let reply = hive
            .send_sync(module::EDGED, msg(op::QUERY, "q"), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.content_str(), Some("OK"));

        // Registered after start: runs at once.
        assert_eq!(core.register(Echo::new("late", "late")), Ok(true));
        let reply = hive
            .send_sync("late", msg(op::QUERY, "q2"), Duration::from_secs(5))
            .await;
        assert!(reply.is_ok());

        // The forwarded message reaches edged before we stop everything.
        while !edged_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&"early".to_owned())
        {
            tokio::task::yield_now().await;
        }
        core.shutdown().await;
        for name in [module::META_MANAGER, module::EDGED, "late"] {
            assert!(!hive.is_registered(name), "{name} not cleaned up");
        }
        let meta_seen = meta_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(meta_seen, ["early", "helper stopped"]);
        let edged_seen = edged_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The forwarded early message arrives before or after the query; both are there.
        assert!(edged_seen.contains(&"early".to_owned()) && edged_seen.contains(&"q".to_owned()));
        assert_eq!(edged_seen.last().map(String::as_str), Some("helper stopped"));
    }

    #[tokio::test]
    async fn module_that_returns_is_cleaned_up() {
        struct Quits;
        impl Module for Quits {
            fn name(&self) -> &str {
                "quits"
            }
            fn group(&self) -> &str {
                "g"
            }
            async fn run(self: Box<Self>, _ctx: ModuleContext) {}
        }
        let hive = Beehive::default();
        let mut core = Core::new(hive.clone());
        assert_eq!(core.register(Quits), Ok(true));
        assert!(hive.is_registered("quits"));
        core.start();
        while hive.is_registered("quits") {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hive.send("quits", msg(op::UPDATE, "x")).await,
            Err(Error::UnknownModule { .. })
        ));
        core.shutdown().await;
    }

    #[tokio::test]
    async fn ending_module_does_not_unregister_a_successor_of_the_same_name() {
        let hive = Beehive::default();
        let mut core = Core::new(hive.clone());
        let old = Echo::new("m", "g");
        let old_seen = Arc::clone(&old.seen);
        assert_eq!(core.register(old), Ok(true));
        core.start();
        // Take the name away from the running module and give it to someone else.
        assert!(hive.cleanup("m"));
        let mut successor = hive.register("m", "g").unwrap_or_else(|e| panic!("{e}"));
        core.shutdown().await;
        assert!(
            old_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&"helper stopped".to_owned())
        );
        assert!(
            hive.is_registered("m"),
            "the old module's exit removed its successor"
        );
        hive.send("m", msg(op::UPDATE, "for successor"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            successor.recv().await.map(|m| m.route.resource),
            Some("for successor".into())
        );
    }

    #[tokio::test]
    async fn shutdown_without_start_unregisters() {
        let hive = Beehive::default();
        let mut core = Core::new(hive.clone());
        assert_eq!(core.register(Echo::new("a", "g")), Ok(true));
        let token = core.cancellation_token();
        core.shutdown().await;
        assert!(token.is_cancelled());
        assert!(!hive.is_registered("a"));
    }
}
