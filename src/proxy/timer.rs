//! A timer armed only once a wait actually has to wait: a read whose bytes are already there
//! costs no timer, and one timer per connection or body is reset rather than made anew.

use std::pin::Pin;
use std::task::Context;
use tokio::time::{Instant, Sleep};

/// One lazily made, reusable `Sleep`.
#[derive(Default)]
pub struct LazyTimer(Option<Pin<Box<Sleep>>>);

impl LazyTimer {
    /// Whether `deadline` has passed; registers `cx` for a wake-up at it if not.
    pub fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let sleep = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}
