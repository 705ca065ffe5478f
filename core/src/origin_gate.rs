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
//! - **spread**: a refused asker is told a time to come back ([`Answer::Wait`]), one slot
//!   after the last turn of the line, so waiting inboxes return one by one, about as fast as
//!   the origin can be served, instead of hammering the gate;
//! - **reservation**: that turn is kept for the asker, not a hint. The inbox stores it as the
//!   copy's due time and presents it with its next ask (the turn is its own ticket, and it
//!   survives the inbox's eviction because it is stored). A presented turn goes before any
//!   asker without one as soon as a lease and a rate slot are free; while none is, it is told
//!   a short re-check and keeps its place. While any reservation is outstanding, a new asker
//!   is placed behind the line, never granted ahead of it. A reservation not presented within
//!   [`TURN_GRACE_MS`] of its turn (its copy was delivered elsewhere, erased, or deferred by a
//!   breaker) is forgotten, so it never holds the line for long; a turn the gate does not
//!   know (forgotten, or from before a restart) counts as none.
//!
//! Without reservations a line of two thousand waiting copies drained at about one a second
//! (`scripts/bench_storm.py`): a copy whose alarm fired a little late found its slot taken by
//! a newer asker and was sent to the back of a line minutes long.
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
/// How long past its turn a reservation waits to be presented: alarms fire late, but a
/// reservation whose copy never comes back must not hold the line for long.
pub const TURN_GRACE_MS: u64 = 5_000;
/// Most reservations a gate keeps. Past it a refused asker is still told a turn at the back of
/// the line, but without a reservation: it comes back as a new asker, and the gate's memory
/// (and the scan of each ask, linear in it) stays bounded.
pub const MAX_RESERVATIONS: usize = 10_000;

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
    fn from_integers(concurrency: i64, interval: i64, lease: i64) -> Option<Self> {
        let set = |value: i64| u64::try_from(value).ok().filter(|v| *v > 0);
        Some(Self {
            max_concurrency: set(concurrency).map(|c| u32::try_from(c).unwrap_or(MAX_LEASES)),
            interval_ms: set(interval),
            lease_ms: set(lease)?,
        })
    }
}

/// An ask as the inbox sends it, `[max_concurrency,interval_ms,lease_ms,turn]`: the limits (0
/// for one that is not set) and the turn the copy presents (its due time).
pub fn ask_to_wire(limits: GateLimits, presented: UnixMs) -> alloc::string::String {
    alloc::format!(
        "[{},{},{},{}]",
        limits.max_concurrency.unwrap_or(0),
        limits.interval_ms.unwrap_or(0),
        limits.lease_ms,
        presented.0
    )
}

/// Reads [`ask_to_wire`]'s text back; `None` when it is not one (or its lease is 0). Three
/// integers (an isolate of the release before reservations, during a deployment) are an ask
/// that presents no turn.
pub fn ask_from_wire(text: &str) -> Option<(GateLimits, Option<UnixMs>)> {
    match integers(text)?[..] {
        [c, i, l] => Some((GateLimits::from_integers(c, i, l)?, None)),
        [c, i, l, turn] => Some((GateLimits::from_integers(c, i, l)?, Some(UnixMs(turn)))),
        _ => None,
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
    /// Outstanding reservations, in the order they were first made: the turn each holder will
    /// present (it lapses [`TURN_GRACE_MS`] after it unless presented).
    reservations: Vec<UnixMs>,
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
            reservations: Vec::new(),
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

    /// Reservations outstanding at `now`.
    pub fn waiting(&self, now: UnixMs) -> usize {
        self.reservations
            .iter()
            .filter(|turn| turn.plus_ms(TURN_GRACE_MS) > now)
            .count()
    }

    /// An inbox asks at `now` to send one request under `limits`, presenting `presented`: the
    /// turn its copy was last told, if this gate told it one (any other time is no ticket).
    pub fn ask(&mut self, limits: GateLimits, presented: Option<UnixMs>, now: UnixMs) -> Asked {
        self.leases.retain(|(_, _, until)| *until > now);
        self.reservations
            .retain(|turn| turn.plus_ms(TURN_GRACE_MS) > now);
        let slots = limits.max_concurrency.map(|c| c.clamp(1, MAX_LEASES));
        let full = slots.is_some_and(|c| self.leases.len() >= c as usize);
        let blocked = now < self.blocked_until;
        let rate_wait = limits.interval_ms.is_some() && now < self.next_slot;
        let free = !(full || blocked || rate_wait);
        let mut earliest = now;
        if blocked {
            earliest = earliest.max(self.blocked_until);
        }
        if rate_wait {
            earliest = earliest.max(self.next_slot);
        }
        // About how often the gate can grant: the rate's interval, or a lease's hold shared
        // among the slots, whichever is longer.
        let spacing = limits
            .interval_ms
            .unwrap_or(0)
            .max(slots.map_or(0, |c| self.hold_ms / u64::from(c)))
            .max(MIN_SPACING_MS);
        let held = presented.and_then(|turn| self.reservations.iter().position(|t| *t == turn));
        if let Some(at) = held {
            if free {
                self.reservations.remove(at);
                return self.grant(limits, now);
            }
            // Its turn, but no slot is free yet (leases held longer than the gate reckoned,
            // alarms late and bunched): it keeps its place and looks again about when its
            // place comes, a slot per older reservation (every one still outstanding is ahead
            // of it) after a lease is expected back (the oldest lease's grant plus the hold;
            // shortly, when that has passed). Told only "soon", a long line that has fallen
            // behind its turns would ask once per slot each, not once.
            let expected_back = self
                .leases
                .iter()
                .map(|(_, granted, _)| granted.plus_ms(self.hold_ms))
                .min()
                .filter(|back| *back > now)
                .unwrap_or_else(|| now.plus_ms(spacing / 2));
            let ahead = u64::try_from(at).unwrap_or(u64::MAX);
            let recheck = self.unused_turn(
                earliest
                    .max(expected_back.plus_ms(spacing.saturating_mul(ahead)))
                    .max(now.plus_ms(MIN_SPACING_MS)),
            );
            if let Some(reservation) = self.reservations.get_mut(at) {
                *reservation = recheck;
            }
            return Self::wait(recheck);
        }
        if free && self.reservations.is_empty() {
            return self.grant(limits, now);
        }
        // Behind the line: one slot after its last turn (or after now, when the slots are
        // all held and nobody waits). A line whose last turn has passed (its holders are
        // late) still puts a newcomer a slot after now, not at once.
        let after = match self.reservations.iter().max() {
            Some(back) => (*back).max(now).plus_ms(spacing),
            None if full => now.plus_ms(spacing),
            None => now,
        };
        let turn = earliest.max(after).max(now.plus_ms(1));
        if self.reservations.len() < MAX_RESERVATIONS {
            self.reservations.push(turn);
        }
        Self::wait(turn)
    }

    /// `at`, or the first millisecond after it that no reservation holds: a turn names one
    /// reservation.
    fn unused_turn(&self, mut at: UnixMs) -> UnixMs {
        while self.reservations.contains(&at) {
            at = at.plus_ms(1);
        }
        at
    }

    fn wait(until: UnixMs) -> Asked {
        Asked {
            answer: Answer::Wait(until),
            fence: None,
        }
    }

    fn grant(&mut self, limits: GateLimits, now: UnixMs) -> Asked {
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
        Asked {
            answer: Answer::Go(lease),
            fence,
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
        let a = go(gate.ask(l, None, NOW));
        let _b = go(gate.ask(l, None, NOW));
        let turn = wait(gate.ask(l, None, NOW));
        assert!(turn > NOW);
        gate.release(a.id, NOW.plus_ms(30));
        let c = go(gate.ask(l, Some(turn), turn));
        // Two leases live; neither is released: both expire after the lease's lifetime.
        let turn = wait(gate.ask(l, None, NOW.plus_ms(11_999)));
        assert_eq!(gate.live(c.expires_at), 0);
        go(gate.ask(l, Some(turn), c.expires_at));
        // A release of a lease long gone changes nothing.
        gate.release(a.id, c.expires_at.plus_ms(1));
        assert_eq!(gate.live(c.expires_at.plus_ms(1)), 1);
    }

    #[test]
    fn grants_are_spaced_by_the_interval_and_waiters_are_spread() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(None, Some(200));
        go(gate.ask(l, None, NOW));
        let turns: Vec<UnixMs> = (0..5)
            .map(|_| wait(gate.ask(l, None, NOW.plus_ms(1))))
            .collect();
        assert_eq!(
            turns,
            [200, 400, 600, 800, 1_000].map(|ms| NOW.plus_ms(ms)),
            "each waiter its own turn, one interval apart"
        );
        go(gate.ask(l, Some(turns[0]), turns[0]));
        // A grant is never sooner than the interval, reservation or not.
        assert!(wait(gate.ask(l, Some(turns[1]), NOW.plus_ms(399))) > NOW.plus_ms(399));
    }

    #[test]
    fn a_new_asker_waits_behind_the_line_even_with_a_slot_free() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), None);
        let a = go(gate.ask(l, None, NOW));
        let first = wait(gate.ask(l, None, NOW));
        gate.release(a.id, NOW.plus_ms(10));
        // The slot is free, but a reservation is outstanding: the newcomer is placed after it.
        let second = wait(gate.ask(l, None, NOW.plus_ms(11)));
        assert!(second > first);
        assert_eq!(gate.waiting(NOW.plus_ms(11)), 2);
        // A turn this gate never gave is no reservation.
        assert!(wait(gate.ask(l, Some(NOW.plus_ms(12)), NOW.plus_ms(12))) > second);
        let b = go(gate.ask(l, Some(first), first));
        // The second, at its turn, finds the slot held: a short re-check keeps its place.
        let recheck = wait(gate.ask(l, Some(second), second));
        assert!(recheck > second && recheck.0 - second.0 <= INITIAL_HOLD_MS as i64);
        // A slot freed just before its re-check is not taken by anyone without a reservation.
        gate.release(b.id, UnixMs(recheck.0 - 1));
        assert!(wait(gate.ask(l, None, UnixMs(recheck.0 - 1))) > recheck);
        go(gate.ask(l, Some(recheck), recheck));
    }

    #[test]
    fn a_late_holder_keeps_its_place_ahead_of_newer_askers() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), None);
        let a = go(gate.ask(l, None, NOW));
        let turn = wait(gate.ask(l, None, NOW));
        gate.release(a.id, NOW.plus_ms(5));
        // Its alarm fires two seconds late; a newcomer asks first, and is not served first.
        let late = turn.plus_ms(2_000);
        assert!(wait(gate.ask(l, None, late)) > late);
        go(gate.ask(l, Some(turn), late));
    }

    #[test]
    fn reservations_past_their_turn_recheck_spread_out_oldest_first() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), Some(10));
        let _held = go(gate.ask(l, None, NOW));
        let turns: Vec<UnixMs> = (0..3).map(|_| wait(gate.ask(l, None, NOW))).collect();
        let late = turns[2].plus_ms(1);
        // All three are past their turn and the slot is still held past the hold the gate
        // reckons: the oldest looks again soonest, each of the others a slot (the hold, with
        // one slot) after the one before it.
        let rechecks: Vec<i64> = turns
            .iter()
            .map(|turn| wait(gate.ask(l, Some(*turn), late)).0 - late.0)
            .collect();
        let slot = INITIAL_HOLD_MS as i64;
        assert_eq!(
            rechecks,
            [slot / 2, slot / 2 + slot, slot / 2 + 2 * slot],
            "{rechecks:?}"
        );
        // Presented again at their new turns, still with the slot held, none is sent to the
        // back of a line: each is told its place again.
        let third = UnixMs(late.0 + rechecks[2]);
        let again = wait(gate.ask(l, Some(third), third));
        assert!(again.0 - late.0 - rechecks[2] <= 3 * slot, "{again}");
    }

    #[test]
    fn an_unpresented_reservation_lapses() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), None);
        let a = go(gate.ask(l, None, NOW));
        let turn = wait(gate.ask(l, None, NOW));
        gate.release(a.id, NOW.plus_ms(5));
        assert_eq!(gate.waiting(turn.plus_ms(TURN_GRACE_MS - 1)), 1);
        assert_eq!(gate.waiting(turn.plus_ms(TURN_GRACE_MS)), 0);
        // Once it is gone, a new asker is granted at once, and the lapsed turn is no ticket.
        let b = go(gate.ask(l, None, turn.plus_ms(TURN_GRACE_MS)));
        gate.release(b.id, turn.plus_ms(TURN_GRACE_MS + 1));
        go(gate.ask(l, Some(turn), turn.plus_ms(TURN_GRACE_MS + 2)));
    }

    #[test]
    fn a_restored_gate_forgets_reservations_and_grants_nothing_before_its_fence() {
        let mut gate = OriginGate::restore(None, 0);
        let l = limits(Some(1), None);
        let asked = gate.ask(l, None, NOW);
        let fence = asked.fence.expect("the first grant writes a fence");
        assert!(fence >= go(asked).expires_at);
        let turn = wait(gate.ask(l, None, NOW.plus_ms(10)));
        // Another grant within the fence writes nothing.
        let mut gate2 = gate.clone();
        gate2.leases.clear();
        assert_eq!(gate2.ask(l, Some(turn), turn).fence, None);
        let mut restarted = OriginGate::restore(Some(fence), 99);
        assert_eq!(restarted.waiting(NOW), 0);
        // The old turn is unknown, and the lease granted before the crash may be in flight.
        let again = wait(restarted.ask(l, Some(turn), turn));
        assert!(again >= fence);
        go(restarted.ask(l, Some(again), again));
    }

    /// `n` askers refused at once under `concurrency`, each holding its lease `hold` ms and
    /// coming back `late(i)` ms after the turn it was told, presenting it: how long until every
    /// one has been granted. With `warm`, the gate has first seen leases held `hold` ms (its
    /// estimate of the hold, which spaces the turns, starts at [`INITIAL_HOLD_MS`]).
    fn drain(
        n: usize,
        concurrency: u32,
        hold: u64,
        warm: bool,
        late: impl Fn(usize) -> u64,
    ) -> u64 {
        let l = limits(Some(concurrency), None);
        let mut gate = OriginGate::restore(None, 3);
        if warm {
            let start = UnixMs(NOW.0 - 40 * hold as i64);
            for k in 0..32 {
                let lease = go(gate.ask(l, None, start.plus_ms(k * hold)));
                gate.release(lease.id, start.plus_ms((k + 1) * hold));
            }
        }
        // The slots are busy while the askers line up.
        let blockers: Vec<Lease> = (0..concurrency)
            .map(|_| go(gate.ask(l, None, NOW)))
            .collect();
        // (when, asker, the turn it presents) of each return; (when, lease) of each release.
        let mut returns: Vec<(UnixMs, usize, UnixMs)> = (0..n)
            .map(|i| {
                let turn = wait(gate.ask(l, None, NOW));
                (turn.plus_ms(late(i)), i, turn)
            })
            .collect();
        let mut releases: Vec<(UnixMs, u64)> = blockers
            .iter()
            .map(|lease| (NOW.plus_ms(hold), lease.id))
            .collect();
        let mut served = 0;
        let mut last = NOW;
        let mut asks = 0;
        while served < n {
            asks += 1;
            assert!(asks < n * 100, "{served} of {n} served after {asks} asks");
            returns.sort_by_key(|(at, i, _)| (core::cmp::Reverse(*at), core::cmp::Reverse(*i)));
            releases.sort_by_key(|(at, _)| core::cmp::Reverse(*at));
            let next_return = returns.last().map(|r| r.0);
            if let Some((at, id)) = releases.last().copied() {
                if next_return.is_none_or(|r| at <= r) {
                    releases.pop();
                    gate.release(id, at);
                    continue;
                }
            }
            let (at, i, turn) = returns.pop().expect("someone still waits");
            match gate.ask(l, Some(turn), at).answer {
                Answer::Go(lease) => {
                    served += 1;
                    last = at;
                    assert!(gate.live(at) <= concurrency as usize);
                    releases.push((at.plus_ms(hold), lease.id));
                }
                Answer::Wait(until) => returns.push((until.plus_ms(late(i) % 7), i, until)),
            }
        }
        u64::try_from(last.0 - NOW.0).unwrap_or(u64::MAX)
    }

    #[test]
    fn a_line_of_reservations_drains_at_the_limits() {
        // 400 askers, 4 slots held 40 ms each: 100 rounds of 40 ms at best.
        let best = 400 / 4 * 40;
        let on_time = drain(400, 4, 40, true, |_| 0);
        assert!(
            on_time <= best * 3 / 2,
            "{on_time} ms against {best} ms at best"
        );
        // Coming back late (an alarm's lateness, up to 0.3 s) keeps the place in line.
        let late = drain(400, 4, 40, true, |i| (i as u64 * 7_919) % 300);
        assert!(
            late <= best * 3 / 2 + 300,
            "{late} ms against {best} ms at best"
        );
        // A gate that has seen no lease released yet spaces the turns by its first estimate.
        let cold = drain(400, 4, 40, false, |_| 0);
        let estimated = 400 / 4 * INITIAL_HOLD_MS;
        assert!(
            cold <= estimated * 11 / 10,
            "{cold} ms against {estimated} ms"
        );
    }

    #[test]
    fn asks_answers_and_releases_read_back() {
        for l in [limits(Some(3), Some(250)), limits(None, None)] {
            assert_eq!(ask_from_wire(&ask_to_wire(l, NOW)), Some((l, Some(NOW))));
        }
        // An isolate of the release before reservations presents no turn.
        assert_eq!(
            ask_from_wire("[3,250,12000]"),
            Some((limits(Some(3), Some(250)), None))
        );
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
        for bad in [
            "[2,200,0]",
            "[2,200,0,5]",
            "[2,200]",
            "2,200,100",
            "[a,1,2]",
            "[1,2,3,4,5]",
            "",
        ] {
            assert_eq!(ask_from_wire(bad), None, "{bad}");
        }
        assert_eq!(Answer::from_wire("[2,1]"), None);
        assert_eq!(release_from_wire("[-1]"), None);
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the asks (with the turn last told, a stale one, or none), releases,
            /// restarts and times: never more live leases than the limit, grants at least the
            /// interval apart (across restarts too, since a restart grants nothing before its
            /// fence), every wait in the future, and a reservation presented while a slot and
            /// the rate are free is granted.
            #[test]
            fn limits_hold_under_any_asks(
                concurrency in 1u32..5,
                interval in 1u64..400,
                ops in proptest::collection::vec((0u8..12, 0u64..300), 1..300),
            ) {
                let l = GateLimits { max_concurrency: Some(concurrency), interval_ms: Some(interval), lease_ms: 1_000 };
                let mut gate = OriginGate::restore(None, 1);
                let mut stored: Option<UnixMs> = None;
                let mut now = NOW;
                let mut live: Vec<Lease> = Vec::new();
                let mut last_grant: Option<UnixMs> = None;
                let mut told: Vec<UnixMs> = Vec::new();
                let mut restarts = 0u64;
                for (op, dt) in ops {
                    now = now.plus_ms(dt);
                    live.retain(|lease| lease.expires_at > now);
                    match op {
                        0..=7 => {
                            let presented = match op {
                                0..=4 if !told.is_empty() => Some(told.remove(usize::from(op) % told.len())),
                                5 => Some(now),
                                _ => None,
                            };
                            let known = presented.is_some_and(|turn| {
                                gate.reservations.iter().any(|t| *t == turn && t.plus_ms(TURN_GRACE_MS) > now)
                            });
                            let slot_free = live.len() < concurrency as usize
                                && last_grant.is_none_or(|last| now.0 - last.0 >= interval as i64)
                                && restarts == 0;
                            let asked = gate.ask(l, presented, now);
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
                                Answer::Wait(at) => {
                                    prop_assert!(at > now);
                                    prop_assert!(!(known && slot_free), "a reservation presented with a slot free waits");
                                    told.push(at);
                                }
                            }
                        }
                        8..=10 => if !live.is_empty() {
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
