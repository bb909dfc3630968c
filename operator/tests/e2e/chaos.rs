//! Crash safety at scale: 200 batches at parallelism 20 while the operator is SIGKILLed 20
//! times at pseudo-random moments. Prints kills, duplicates, lost batches and recovery times.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::harness::{Env, status, wait_until};

const BATCHES: usize = 200;
const KILLS: usize = 20;

/// xorshift: the same "random" kill moments on every run, so a failure can be replayed.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn survives_twenty_kills_over_two_hundred_batches() -> Result<()> {
    let mut env = Env::new("chaos").await?;
    let api = env.jobs();
    let observer = crate::harness::JobUids::watch(api);
    observer.synced().await?;

    env.start_operator()?;
    let started = Instant::now();
    env.create(
        "chaos",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 20}),
    )
    .await?;
    let mut moments = Moments(0x5eed_cafe_f00d_d00d);
    let mut recoveries = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(moments.next_ms(300, 2500))).await;
        env.kill_operator();
        tokio::time::sleep(Duration::from_millis(moments.next_ms(50, 500))).await;
        let restarted = Instant::now();
        env.start_operator()?;
        // Recovered: caches synced and reconciling again.
        wait_until(
            Duration::from_secs(60),
            "operator ready after restart",
            || async {
                Ok(env
                    .http_get("/readyz")
                    .ok()
                    .filter(|(code, _)| *code == 200)
                    .map(|_| ()))
            },
        )
        .await?;
        recoveries.push(restarted.elapsed());
    }
    let rj = env
        .wait_phase("chaos", "Succeeded", Duration::from_secs(600))
        .await?;
    let took = started.elapsed();
    let (seen, duplicates) = observer.finish_idle(&env).await?;
    let s = status(&rj);
    let lost = BATCHES as i64 - s.batches.succeeded;
    recoveries.sort();
    let ms = |d: &Duration| d.as_millis();
    eprintln!(
        "chaos: {KILLS} kills survived over {BATCHES} batches in {:.1}s; duplicates {}; lost batches {lost}; \
         recovery after kill p50 {} ms, max {} ms",
        took.as_secs_f64(),
        duplicates.len(),
        ms(&recoveries[recoveries.len() / 2]),
        ms(&recoveries[recoveries.len() - 1]),
    );
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert_eq!(seen, BATCHES, "Jobs seen");
    assert_eq!(lost, 0);
    assert_eq!(
        (s.batches.total, s.batches.failed, s.frames.rendered),
        (BATCHES as i64, 0, BATCHES as i64)
    );
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-199"));
    Ok(())
}
