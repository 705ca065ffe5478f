//! The tokens of an origin with `max_concurrency` or `max_per_second`: one gate per limited
//! origin, shared by every inbox, that answers each request to send either "go now, under
//! this lease" or "your turn is at T".
//!
//! After an outage thousands of inboxes wake at once and each would send its head-of-line
//! copy; without a gate they overload the origin, which answers after the timeout, which the
//! edge counts as a failure and sends again. The gate bounds what they send together:
//!
//! - **concurrency**: a [`Lease`] is held from the grant until the inbox has the origin's
//!   answer and releases it, or until it expires ([`GateLimits::lease_ms`]: the origin's
//!   timeout plus [`LEASE_MARGIN_MS`]), so a lease whose release is lost never leaks a slot;
//!   at most `max_concurrency` leases are live at once;
//! - **rate**: grants are spaced at least [`GateLimits::interval_ms`] apart (virtual
//!   scheduling, GCRA with no burst): in any half-open window of `W` ms the gate grants at
//!   most `⌈W / interval⌉`, so at most `⌈max_per_second⌉` in any second (the interval is
//!   rounded up to whole milliseconds); the inbox starts each request within
//!   [`GRANT_FRESH_MS`] of asking, so at most `⌈(W + GRANT_FRESH_MS) / interval⌉` requests
//!   start in any window of `W` ms;
//! - **spread**: a refused asker is told a time to come back ([`Answer::Wait`]), each later
//!   than the last one told by about one slot, so waiting inboxes return one by one instead
//!   of hammering the gate (reservations over polling).
//!
//! Sans-IO, time passed in. The gate object keeps this in memory; what must survive it (a
//! crash mid-traffic loses the leases it granted) is one instant, the [`Asked::fence`]:
//! until it passes, a gate restored from storage ([`OriginGate::restore`]) grants nothing,
//! since every lease granted before the crash may still be in flight. It is written at most
//! about once a [`FENCE_AHEAD_MS`], not once per request.

use alloc::vec::Vec;

use crate::time::UnixMs;

/// How much longer than the origin's timeout a lease lives: the request must have ended
/// before its lease expires, and the inbox starts it at most [`GRANT_FRESH_MS`] after asking.
pub const LEASE_MARGIN_MS: u64 = 2_000;
/// The longest an inbox may take from asking the gate to starting the request it granted; a
/// grant that comes later is released unused and the origin counts as busy.
pub const GRANT_FRESH_MS: u64 = 500;
/// How long an inbox waits before asking again when the gate could not be asked (unreachable,
/// slow, an unreadable answer): never a failure of the origin, never a send without a grant.
pub const GATE_RETRY_MS: u64 = 1_000;
/// How far past the last lease's expiry the stored fence is written, so that a busy gate
/// writes it about once this often rather than on every grant.
pub const FENCE_AHEAD_MS: u64 = 1_000;
/// The fewest milliseconds between two return times the gate hands out.
pub const MIN_SPACING_MS: u64 = 5;
/// How long a lease is assumed to be held before the gate has seen one released.
pub const INITIAL_HOLD_MS: u64 = 100;
/// Most leases a gate keeps (a `max_concurrency` above it is capped to it).
pub const MAX_LEASES: u32 = 1_000;

/// One origin's limits, as the inbox asks the gate to apply them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateLimits {
    /// Most requests in flight at once (`max_concurrency`).
    pub max_concurrency: Option<u32>,
    /// Fewest milliseconds between two grants (`⌈1000 / max_per_second⌉`).
    pub interval_ms: Option<u64>,
    /// How long a lease lives unless released: the origin's timeout plus [`LEASE_MARGIN_MS`].
    pub lease_ms: u64,
}

/// A grant: the request it covers may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Names the lease to release it.
    pub id: u64,
    /// When the gate forgets it, released or not.
    pub expires_at: UnixMs,
}

/// The gate's answer to an ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send now, and release the lease once the origin's answer is in.
    Go(Lease),
    /// Not now: come back at this time (the copy waits; it is neither a failure nor a retry).
    Wait(UnixMs),
}

/// What an ask came to, and what the gate object must store before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The answer for the inbox.
    pub answer: Answer,
    /// Write this fence before the answer leaves (`None`: the stored one still covers it).
    pub fence: Option<UnixMs>,
}

impl Answer {
    /// The answer as the gate object sends it: `[1,id,expires_at]` (go) or `[0,until]` (wait),
    /// integers written and read by hand (a derived or `Value` reader costs the upload more).
    pub fn to_wire(&self) -> alloc::string::String {
        match self {
            Self::Go(lease) => alloc::format!("[1,{},{}]", lease.id, lease.expires_at.0),
            Self::Wait(until) => alloc::format!("[0,{}]", until.0),
        }
    }

    /// Reads [`Answer::to_wire`]'s text back; `None` for anything else.
    pub fn from_wire(text: &str) -> Option<Self> {
        match integers(text)?[..] {
            [1, id, expires_at] => Some(Self::Go(Lease {
                id: u64::try_from(id).ok()?,
                expires_at: UnixMs(expires_at),
            })),
            [0, until] => Some(Self::Wait(UnixMs(until))),
            _ => None,
        }
    }
}

impl GateLimits {
    /// The ask as the inbox sends it: `[max_concurrency,interval_ms,lease_ms]`, 0 for a limit
    /// that is not set.
    pub fn to_wire(&self) -> alloc::string::String {
        alloc::format!(
            "[{},{},{}]",
            self.max_concurrency.unwrap_or(0),
            self.interval_ms.unwrap_or(0),
            self.lease_ms
        )
    }

    /// Reads an ask; `None` when it is not one (or its lease is 0).
    pub fn from_wire(text: &str) -> Option<Self> {
        let [concurrency, interval, lease] = integers(text)?[..] else {
            return None;
        };
        let set = |value: i64| u64::try_from(value).ok().filter(|v| *v > 0);
        Some(Self {
            max_concurrency: set(concurrency).map(|c| u32::try_from(c).unwrap_or(MAX_LEASES)),
            interval_ms: set(interval),
            lease_ms: set(lease)?,
        })
    }
}

/// A release as the inbox sends it: `[id]`.
pub fn release_to_wire(lease: u64) -> alloc::string::String {
    alloc::format!("[{lease}]")
}

/// Reads [`release_to_wire`]'s text back.
pub fn release_from_wire(text: &str) -> Option<u64> {
    match integers(text)?[..] {
        [id] => u64::try_from(id).ok(),
        _ => None,
    }
}

/// The integers of a JSON array of integers, `[1,2,3]`; `None` for anything else.
fn integers(text: &str) -> Option<Vec<i64>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(|n| n.trim().parse().ok()).collect()
}

/// One limited origin's gate; see the module's documentation.
#[derive(Clone, Debug)]
pub struct OriginGate {
    /// Live leases: id, when granted, when they expire.
    leases: Vec<(u64, UnixMs, UnixMs)>,
    /// The earliest time of the next grant under the rate (GCRA's theoretical arrival time).
    next_slot: UnixMs,
    /// The last return time handed out to a refused asker.
    offered: UnixMs,
    /// Nothing is granted before this: leases granted before a restart may still be live.
    blocked_until: UnixMs,
    /// The fence last written (what a restart would find).
    stored_fence: UnixMs,
    /// How long leases are held, on average (a moving average of the released ones).
    hold_ms: u64,
    next_id: u64,
}

impl OriginGate {
    /// A gate whose object starts at `now` with `stored_fence` in storage (`None`: never
    /// written). Until that fence passes, nothing is granted. `id_seed` starts the lease ids
    /// (pass a random number, so that a release meant for a lease of an earlier incarnation
    /// never names one of this one).
    pub fn restore(stored_fence: Option<UnixMs>, id_seed: u64) -> Self {
        let fence = stored_fence.unwrap_or(UnixMs(i64::MIN));
        Self {
            leases: Vec::new(),
            next_slot: fence,
            offered: fence,
            blocked_until: fence,
            stored_fence: fence,
            hold_ms: INITIAL_HOLD_MS,
            // Below 2^52: an id stays exact as a JavaScript number, and never wraps.
            next_id: id_seed & ((1 << 52) - 1),
        }
    }

    /// Leases live at `now`.
    pub fn live(&self, now: UnixMs) -> usize {
        self.leases
            .iter()
            .filter(|(_, _, until)| *until > now)
            .count()
    }

    /// An inbox asks at `now` to send one request under `limits`.
    pub fn ask(&mut self, limits: GateLimits, now: UnixMs) -> Asked {
        self.leases.retain(|(_, _, until)| *until > now);
        let slots = limits.max_concurrency.map(|c| c.clamp(1, MAX_LEASES));
        let full = slots.is_some_and(|c| self.leases.len() >= c as usize);
        let blocked = now < self.blocked_until;
        let rate_wait = limits.interval_ms.is_some() && now < self.next_slot;
        if !(full || blocked || rate_wait) {
            self.next_id = self.next_id.wrapping_add(1);
            let lease = Lease {
                id: self.next_id,
                expires_at: now.plus_ms(limits.lease_ms),
            };
            self.leases.push((lease.id, now, lease.expires_at));
            if let Some(interval) = limits.interval_ms {
                self.next_slot = now.plus_ms(interval);
            }
            let covers = lease.expires_at.max(self.next_slot);
            let fence = (covers > self.stored_fence).then(|| covers.plus_ms(FENCE_AHEAD_MS));
            if let Some(fence) = fence {
                self.stored_fence = fence;
            }
            return Asked {
                answer: Answer::Go(lease),
                fence,
            };
        }
        let mut earliest = now;
        if blocked {
            earliest = earliest.max(self.blocked_until);
        }
        if rate_wait {
            earliest = earliest.max(self.next_slot);
        }
        let spacing = limits
            .interval_ms
            .unwrap_or(0)
            .max(slots.map_or(0, |c| self.hold_ms / u64::from(c)))
            .max(MIN_SPACING_MS);
        // Each refused asker gets its own turn, one spacing after the last one handed out:
        // the gate may grant one request per spacing, so they come back about as fast as they
        // can be served.
        let turn = earliest
            .max(self.offered.plus_ms(spacing))
            .max(now.plus_ms(1));
        self.offered = turn;
        Asked {
            answer: Answer::Wait(turn),
            fence: None,
        }
    }

    /// The inbox holding lease `id` has its answer at `now` (a release of a lease already
    /// expired, or granted before a restart, changes nothing).
    pub fn release(&mut self, id: u64, now: UnixMs) {
        let Some(at) = self.leases.iter().position(|(lease, _, _)| *lease == id) else {
            return;
        };
        let (_, granted, _) = self.leases.swap_remove(at);
        let held = u64::try_from(now.0.saturating_sub(granted.0)).unwrap_or(0);
        self.hold_ms = (self.hold_ms.saturating_mul(7).saturating_add(held)) / 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: UnixMs = UnixMs(1_000_000);

    fn limits(concurrency: Option<u32>, interval: Option<u64>) -> GateLimits {
        GateLimits {
            max_concurrency: concurrency,
            interval_ms: interval,
            lease_ms: 12_000,
        }
    }

    fn go(asked: Asked) -> Lease {
        match asked.answer {
            Answer::Go(lease) => lease,
            Answer::Wait(at) => panic!("told to wait until {at}"),
        }
    }

    fn wait(asked: Asked) -> UnixMs {
        match asked.answer {
            Answer::Wait(at) => at,
            Answer::Go(lease) => panic!("granted {lease:?}"),
        }
    }

    #[test]
    fn concurrency_is_held_until_release_and_a_lost_release_expires() {
        let mut gate = OriginGate::restore(None, 7);
        let l = limits(Some(2), None);
        let a = go(gate.ask(l, NOW));
        let _b = go(gate.ask(l, NOW));
        let told = wait(gate.ask(l, NOW));
        assert!(told > NOW);
        gate.release(a.id, NOW.plus_ms(30));
        go(gate.ask(l, NOW.plus_ms(31)));
        // Two leases live; neither is released: both expire after the lease's lifetime.
        wait(gate.ask(l, NOW.plus_ms(11_999)));
        assert_eq!(gate.live(NOW.plus_ms(12_031)), 0);
        go(gate.ask(l, NOW.plus_ms(12_031)));
        // A release of a lease long gone changes nothing.
        gate.release(a.id, NOW.plus_ms(12_032));
        assert_eq!(gate.live(NOW.plus_ms(12_032)), 1);
    }

    #[test]
    fn grants_are_spaced_by_the_interval_and_waiters_are_spread() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(None, Some(200));
        go(gate.ask(l, NOW));
        let turns: Vec<UnixMs> = (0..5).map(|_| wait(gate.ask(l, NOW.plus_ms(1)))).collect();
        assert_eq!(
            turns,
            [200, 400, 600, 800, 1_000].map(|ms| NOW.plus_ms(ms)),
            "each waiter its own turn, one interval apart"
        );
        go(gate.ask(l, NOW.plus_ms(200)));
        wait(gate.ask(l, NOW.plus_ms(399)));
    }

    #[test]
    fn a_restored_gate_grants_nothing_before_its_fence() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), None);
        let asked = gate.ask(l, NOW);
        let fence = asked.fence.expect("the first grant writes a fence");
        assert!(fence >= go(asked).expires_at);
        // Another grant within the fence writes nothing.
        let mut gate2 = gate.clone();
        gate2.leases.clear();
        assert_eq!(gate2.ask(l, NOW.plus_ms(10)).fence, None);
        let mut restarted = OriginGate::restore(Some(fence), 99);
        assert!(wait(restarted.ask(l, NOW.plus_ms(20))) >= fence);
        go(restarted.ask(l, fence));
    }

    #[test]
    fn asks_answers_and_releases_read_back() {
        for l in [limits(Some(3), Some(250)), limits(None, None)] {
            assert_eq!(GateLimits::from_wire(&l.to_wire()), Some(l));
        }
        for answer in [
            Answer::Wait(NOW),
            Answer::Go(Lease {
                id: (1 << 52) + 7,
                expires_at: NOW,
            }),
        ] {
            assert_eq!(Answer::from_wire(&answer.to_wire()), Some(answer));
        }
        assert_eq!(release_from_wire(&release_to_wire(42)), Some(42));
        for bad in ["[2,200,0]", "[2,200]", "2,200,100", "[a,1,2]", ""] {
            assert_eq!(GateLimits::from_wire(bad), None, "{bad}");
        }
        assert_eq!(Answer::from_wire("[2,1]"), None);
        assert_eq!(release_from_wire("[-1]"), None);
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the asks, releases, restarts and times: never more live leases than
            /// the limit, grants at least the interval apart (across restarts too, since a
            /// restart grants nothing before its fence), and every wait is in the future.
            #[test]
            fn limits_hold_under_any_asks(
                concurrency in 1u32..5,
                interval in 1u64..400,
                ops in proptest::collection::vec((0u8..10, 0u64..300), 1..300),
            ) {
                let l = GateLimits { max_concurrency: Some(concurrency), interval_ms: Some(interval), lease_ms: 1_000 };
                let mut gate = OriginGate::restore(None, 1);
                let mut stored: Option<UnixMs> = None;
                let mut now = NOW;
                let mut live: Vec<Lease> = Vec::new();
                let mut last_grant: Option<UnixMs> = None;
                let mut restarts = 0u64;
                for (op, dt) in ops {
                    now = now.plus_ms(dt);
                    live.retain(|lease| lease.expires_at > now);
                    match op {
                        0..=5 => {
                            let asked = gate.ask(l, now);
                            if let Some(fence) = asked.fence { stored = Some(fence); }
                            match asked.answer {
                                Answer::Go(lease) => {
                                    live.push(lease);
                                    prop_assert!(live.len() <= concurrency as usize);
                                    if let Some(last) = last_grant {
                                        prop_assert!(now.0 - last.0 >= interval as i64);
                                    }
                                    last_grant = Some(now);
                                }
                                Answer::Wait(at) => prop_assert!(at > now),
                            }
                        }
                        6..=8 => if !live.is_empty() {
                            let lease = live.remove(usize::from(op) % live.len());
                            gate.release(lease.id, now);
                        },
                        _ => {
                            restarts += 1;
                            gate = OriginGate::restore(stored, restarts << 40);
                        }
                    }
                }
            }
        }
    }
}
