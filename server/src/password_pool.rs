//! The password verifiers: a few plain threads that run the argon2id checks of password
//! logins for every shard, so that a shard's thread never spends tens of milliseconds of
//! CPU on one (`sluice_node::Host::verify_password`).
//!
//! Bounded (docs/style.md §4): `threads` workers take jobs from one queue of `queue_max`
//! jobs. A job that finds the queue full is refused at once with `VerifierBusy` (the login
//! answers 503 with `Retry-After`) rather than queued without end. The shard awaits the
//! answer on a one-slot channel (async-channel: a worker's send wakes the shard's task from
//! another thread, which glommio supports), so it serves other requests meanwhile. The
//! login back-off runs before a job is queued, so a flood of wrong passwords mostly never
//! reaches the pool.

use std::thread::JoinHandle;

use sluice_node::password::{verify_password, VerifierBusy};

/// One check (a closure, so the tests can queue checks they control) and where its answer
/// goes.
struct Check {
    run: Box<dyn FnOnce() -> bool + Send>,
    answer: async_channel::Sender<bool>,
}

pub struct PasswordPool {
    jobs: async_channel::Sender<Check>,
    workers: Vec<JoinHandle<()>>,
}

impl PasswordPool {
    /// Starts `threads` workers behind a queue of `queue_max` checks.
    pub fn start(threads: usize, queue_max: usize) -> Result<PasswordPool, String> {
        assert!(threads > 0, "at least one verifier");
        assert!(queue_max > 0, "room for one queued check");
        let (jobs, queue) = async_channel::bounded::<Check>(queue_max);
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let queue = queue.clone();
            let worker = std::thread::Builder::new()
                .name(format!("sluice-passwords-{index}"))
                .spawn(move || {
                    // Runs until the pool is dropped (the queue closes): one check a turn.
                    while let Ok(check) = queue.recv_blocking() {
                        let matched = (check.run)();
                        // The login may have been dropped meanwhile (its connection closed).
                        let _ = check.answer.try_send(matched);
                    }
                })
                .map_err(|error| format!("cannot start password verifier {index}: {error}"))?;
            workers.push(worker);
        }
        Ok(PasswordPool { jobs, workers })
    }

    /// Checks `password` against `phc` on a worker; `VerifierBusy` at once when the queue
    /// is full.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, VerifierBusy> {
        let answered = self.submit(Box::new(move || verify_password(&password, &phc)))?;
        // A worker always answers unless the pool stops; then the check did not happen.
        answered.recv().await.map_err(|_| VerifierBusy)
    }

    /// Queues `run`, or refuses when the queue is full; the receiver gets its answer.
    fn submit(
        &self,
        run: Box<dyn FnOnce() -> bool + Send>,
    ) -> Result<async_channel::Receiver<bool>, VerifierBusy> {
        let (answer, answered) = async_channel::bounded(1);
        self.jobs
            .try_send(Check { run, answer })
            .map_err(|_| VerifierBusy)?;
        Ok(answered)
    }
}

impl Drop for PasswordPool {
    fn drop(&mut self) {
        self.jobs.close();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use sluice_node::password::hash_password;

    #[test]
    fn checks_run_on_the_pool_and_answer_like_inline_checks() {
        let pool = PasswordPool::start(2, 4).unwrap();
        let phc = hash_password("right", &[4; 16]);
        assert_eq!(block_on(pool.verify("right".into(), phc.clone())), Ok(true));
        assert_eq!(block_on(pool.verify("wrong".into(), phc)), Ok(false));
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        // Goal: the queue is bounded and a check beyond it is refused at once, not queued.
        // Method: one worker and one queue slot; the worker is held inside a first check
        // (which reports that it started) while a second fills the queue and a third is
        // refused; released, both queued checks answer.
        let pool = PasswordPool::start(1, 1).unwrap();
        let (started, worker_started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = pool
            .submit(Box::new(move || {
                started.send(()).unwrap();
                released.recv().unwrap();
                true
            }))
            .unwrap();
        worker_started.recv().unwrap();
        let second = pool.submit(Box::new(|| false)).unwrap();
        assert!(pool.submit(Box::new(|| true)).is_err(), "the queue is full");
        assert_eq!(
            block_on(pool.verify("x".into(), "phc".into())),
            Err(VerifierBusy)
        );
        release.send(()).unwrap();
        assert_eq!(block_on(first.recv()), Ok(true));
        assert_eq!(block_on(second.recv()), Ok(false));
    }
}
