//! Alarm webhooks (`sluice_node::alarms`): one thread per node posts each notification
//! with `ureq`, off the shards' threads, so a slow receiver never holds up a request.
//! Bounded: at most [`WEBHOOK_QUEUE_MAX`] notifications wait (more are dropped and
//! counted), each tried [`WEBHOOK_ATTEMPTS`] times with a doubling pause, each attempt
//! bounded by [`WEBHOOK_TIMEOUT`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Notifications waiting for the sender thread, at most.
pub const WEBHOOK_QUEUE_MAX: usize = 256;
/// Tries of one notification, at most.
pub const WEBHOOK_ATTEMPTS: u32 = 3;
/// The pause before the second try; it doubles for each next one.
pub const WEBHOOK_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// One try's bound, connecting and answering included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's webhook sender.
pub struct Webhooks {
    queue: SyncSender<(String, Vec<u8>)>,
    /// Notifications dropped: the queue was full, or every try failed.
    pub dropped: AtomicU64,
    pub delivered: AtomicU64,
}

impl Webhooks {
    /// Starts the sender thread; it ends when the `Webhooks` is dropped.
    pub fn start() -> std::sync::Arc<Webhooks> {
        let (queue, waiting) = sync_channel(WEBHOOK_QUEUE_MAX);
        let webhooks = std::sync::Arc::new(Webhooks {
            queue,
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        let weak = std::sync::Arc::downgrade(&webhooks);
        std::thread::Builder::new()
            .name("sluice-webhooks".into())
            .spawn(move || send_loop(&waiting, &weak))
            .expect("the webhook thread starts");
        webhooks
    }

    /// Queues a notification; drops it (counted, logged) when the queue is full.
    pub fn post(&self, url: &str, body: Vec<u8>) {
        match self.queue.try_send((url.to_string(), body)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                eprintln!("sluice: alarm webhook to {url} dropped: {WEBHOOK_QUEUE_MAX} waiting");
            }
        }
    }
}

fn send_loop(waiting: &Receiver<(String, Vec<u8>)>, webhooks: &std::sync::Weak<Webhooks>) {
    let agent = ureq::AgentBuilder::new().timeout(WEBHOOK_TIMEOUT).build();
    // Ends when every sender is gone (the node stopped).
    while let Ok((url, body)) = waiting.recv() {
        let mut pause = WEBHOOK_RETRY_PAUSE;
        let mut delivered = false;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let answer = agent
                .post(&url)
                .set("content-type", "application/json")
                .send_bytes(&body);
            match answer {
                Ok(_) => {
                    delivered = true;
                    break;
                }
                Err(error) => {
                    eprintln!("sluice: alarm webhook to {url}, try {attempt}: {error}");
                    if attempt < WEBHOOK_ATTEMPTS {
                        std::thread::sleep(pause);
                        pause *= 2;
                    }
                }
            }
        }
        let Some(webhooks) = webhooks.upgrade() else {
            return;
        };
        let counter = if delivered {
            &webhooks.delivered
        } else {
            &webhooks.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
