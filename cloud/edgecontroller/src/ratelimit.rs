//! Client-side rate limit of every Kubernetes API call: `kubeAPIConfig.qps` / `burst`.
//!
//! v1.2 hands `qps`/`burst` to client-go, whose token bucket delays each request (watch starts
//! included) until a token is free. kube-rs has no such limiter, so [`RateLimitLayer`] is one:
//! a tower layer on the client's service stack with one bucket shared by every clone, holding up
//! to `burst` tokens and refilled at `qps` per second. A request waits in `poll_ready` (the
//! client's buffer holds it meanwhile) — it is delayed, never refused. `qps <= 0` disables the
//! limit; `burst < 1` counts as 1.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The shared token bucket.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token, or says how long until one is free.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// Tower layer limiting requests to `qps` per second with bursts of `burst`.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Option<Arc<Mutex<Bucket>>>,
}

impl RateLimitLayer {
    /// A limiter of `qps` requests per second, `burst` at once (`qps <= 0`: unlimited).
    pub fn new(qps: f64, burst: u32) -> Self {
        let bucket = (qps > 0.0).then(|| {
            let burst = f64::from(burst.max(1));
            Arc::new(Mutex::new(Bucket {
                qps,
                burst,
                tokens: burst,
                at: Instant::now(),
            }))
        });
        Self { bucket }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            granted: false,
            sleep: None,
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Option<Arc<Mutex<Bucket>>>,
    /// A token is held for the next `call`.
    granted: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        // A clone shares the bucket, not the token this one may hold.
        Self {
            inner: self.inner.clone(),
            bucket: self.bucket.clone(),
            granted: false,
            sleep: None,
        }
    }
}

impl<S: Service<R>, R> Service<R> for RateLimit<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.granted {
            let Some(bucket) = &self.bucket else {
                self.granted = true;
                break;
            };
            if let Some(s) = self.sleep.as_mut() {
                ready!(s.as_mut().poll(cx));
                self.sleep = None;
            }
            let now = Instant::now();
            // A poisoned lock only means another holder panicked mid-update; the numbers are
            // still usable.
            let taken = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(now);
            match taken {
                Ok(()) => self.granted = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep_until(now + wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.granted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// Instants (relative to the start) at which `n` requests pass a limiter.
    async fn pass_times(layer: RateLimitLayer, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let svc = tower::service_fn(|()| async move { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut svc = layer.layer(svc);
        let mut out = Vec::new();
        for _ in 0..n {
            let t = svc.ready().await.unwrap().call(()).await.unwrap();
            out.push(t - start);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn burst_passes_at_once_then_one_per_interval() {
        let t = pass_times(RateLimitLayer::new(10.0, 5), 8).await;
        assert!(t[..5].iter().all(|d| *d == Duration::ZERO), "{t:?}");
        // Then one token every 100 ms.
        for (i, d) in t[5..].iter().enumerate() {
            let want = Duration::from_millis(100 * (i as u64 + 1));
            assert!(
                d.abs_diff(want) < Duration::from_millis(2),
                "request {}: {d:?} != {want:?}",
                i + 5
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_burst_only() {
        let layer = RateLimitLayer::new(10.0, 3);
        let svc = tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut svc = layer.layer(svc);
        for _ in 0..3 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(10)).await; // 100 tokens' worth, capped at 3
        let start = Instant::now();
        let mut t = Vec::new();
        for _ in 0..4 {
            t.push(svc.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        assert_eq!(&t[..3], &[Duration::ZERO; 3]);
        assert!(t[3] >= Duration::from_millis(99), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_bucket() {
        let layer = RateLimitLayer::new(1.0, 2);
        let svc = tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut a = layer.layer(svc);
        let mut b = a.clone();
        let start = Instant::now();
        a.ready().await.unwrap().call(()).await.unwrap();
        b.ready().await.unwrap().call(()).await.unwrap();
        let third = a.ready().await.unwrap().call(()).await.unwrap() - start;
        assert!(third >= Duration::from_millis(999), "{third:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_qps_is_unlimited() {
        let t = pass_times(RateLimitLayer::new(0.0, 0), 1000).await;
        assert!(t.iter().all(|d| *d == Duration::ZERO));
    }
}
