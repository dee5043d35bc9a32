//! Schedules: rounds of actions with a pause after each action, a bounded number of rounds
//! (`occurrence-limit`, 0 = forever), a `scheduler/result` after each action.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Schedule;
use crate::error::Result;

/// `scheduler/result` body (v1.2's capitalised keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleResult {
    /// Action name.
    #[serde(rename = "EventName")]
    pub event_name: String,
    /// ms.
    #[serde(rename = "TimeStamp")]
    pub timestamp: i64,
    /// The action's result text.
    #[serde(rename = "EventResult")]
    pub event_result: String,
}

/// The pause after each action: `interval` ms, 0 → 5000 ms (v1.2 default).
pub fn pause(s: &Schedule) -> Duration {
    Duration::from_millis(if s.interval == 0 { 5000 } else { s.interval })
}

/// Runs `s` until its occurrence limit or `cancel`: for each round, for each action, `perform`
/// it, `report` a successful result, then sleep [`pause`]. Returns the number of actions performed.
pub async fn run<P, PF, R, RF>(s: &Schedule, mut perform: P, mut report: R, cancel: CancellationToken) -> u64
where
    P: FnMut(String) -> PF,
    PF: Future<Output = Result<String>>,
    R: FnMut(ScheduleResult) -> RF,
    RF: Future<Output = ()>,
{
    let mut performed = 0;
    let mut round = 0u64;
    while s.occurrence_limit == 0 || round < s.occurrence_limit {
        round += 1;
        for name in &s.actions {
            if cancel.is_cancelled() {
                return performed;
            }
            performed += 1;
            match perform(name.clone()).await {
                Ok(result) => {
                    report(ScheduleResult {
                        event_name: name.clone(),
                        timestamp: mapper_sdk::twin::now_ms(),
                        event_result: result,
                    })
                    .await;
                }
                Err(e) => tracing::warn!(schedule = %s.name, action = %name, "action failed: {e}"),
            }
            tokio::select! {
                () = cancel.cancelled() => return performed,
                () = tokio::time::sleep(pause(s)) => {}
            }
        }
        if s.actions.is_empty() {
            break;
        }
    }
    tracing::info!(schedule = %s.name, rounds = round, "schedule finished");
    performed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    fn sched(limit: u64, actions: &[&str]) -> Schedule {
        Schedule {
            name: "s".into(),
            interval: 3000,
            occurrence_limit: limit,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn occurrence_limit_is_exact() {
        let results = Arc::new(Mutex::new(Vec::new()));
        let r = results.clone();
        let n = run(
            &sched(3, &["A", "B"]),
            |name| async move { Ok(format!("{name}!")) },
            |res| {
                let r = r.clone();
                async move { r.lock().unwrap().push(res.event_name) }
            },
            CancellationToken::new(),
        )
        .await;
        assert_eq!(n, 6);
        assert_eq!(*results.lock().unwrap(), ["A", "B", "A", "B", "A", "B"]);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_runs_until_cancelled_and_failures_are_not_reported() {
        let cancel = CancellationToken::new();
        let reported = Arc::new(Mutex::new(0u64));
        let rep = reported.clone();
        let c = cancel.clone();
        let mut count = 0u64;
        let n = run(
            &sched(0, &["A"]),
            move |_| {
                count += 1;
                if count == 10 {
                    c.cancel();
                }
                let ok = count.is_multiple_of(2);
                async move {
                    if ok {
                        Ok("x".to_owned())
                    } else {
                        Err(crate::Error::Ble("gone".into()))
                    }
                }
            },
            move |_| {
                let rep = rep.clone();
                async move { *rep.lock().unwrap() += 1 }
            },
            cancel.clone(),
        )
        .await;
        assert_eq!(n, 10);
        assert_eq!(*reported.lock().unwrap(), 5);
    }

    #[test]
    fn zero_interval_is_five_seconds() {
        let mut s = sched(1, &["A"]);
        s.interval = 0;
        assert_eq!(pause(&s), Duration::from_secs(5));
    }
}
