//! The one supervisor of a cluster's tasks: the first to end (on its own, or with an error)
//! stops the others, and stopping has a deadline even while Redis hangs (a command in flight
//! could otherwise wait out its response timeout).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cluster::Tasks;

/// Waits for every task; the first to end cancels `token` so the others stop too. Returns the
/// first error, or an error if the tasks did not stop within `deadline` of `token`'s
/// cancellation (they are then aborted).
pub async fn supervise(
    mut tasks: Tasks,
    token: &CancellationToken,
    deadline: Duration,
) -> Result<(), String> {
    let overdue = async {
        token.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::pin!(overdue);
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            next = tasks.join_next() => {
                let Some(ended) = next else { return outcome };
                let ended = ended.unwrap_or_else(|e| Err(format!("task failed: {e}")));
                if outcome.is_ok() {
                    outcome = ended;
                }
                // One of them stopped, maybe without being asked to: stop the others.
                token.cancel();
            }
            _ = &mut overdue => {
                tasks.abort_all();
                return Err(format!(
                    "did not stop within {deadline:?} of the signal (is Redis answering?); stopped anyway"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_fail_stops_the_others_and_gives_the_error() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new();
        let t = token.clone();
        tasks.spawn(async move {
            t.cancelled().await;
            Ok(())
        });
        tasks.spawn(async { Err("projector: broken".to_owned()) });
        let outcome = supervise(tasks, &token, Duration::from_secs(10)).await;
        assert_eq!(outcome, Err("projector: broken".to_owned()));
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_signal_is_abandoned_at_the_deadline() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new();
        tasks.spawn(std::future::pending());
        token.cancel();
        let started = tokio::time::Instant::now();
        let outcome = supervise(tasks, &token, Duration::from_millis(200)).await;
        assert!(
            outcome
                .unwrap_err()
                .starts_with("did not stop within 200ms")
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
