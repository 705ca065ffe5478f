//! Which consumers get an event, and which origin serves each.
//!
//! Origins are grouped by `consumer`. Each consumer receives its own copy of every event one of
//! its origins accepts (by event type and risk level), with its own ordered delivery; within a
//! consumer, its accepting origins are tried by priority until one takes the event.

use alloc::vec::Vec;

use crate::origin::Origin;
use crate::risk::Level;

/// The consumers that take this event, in configuration order, each once.
pub fn consumers_for<'o>(origins: &'o [Origin], webhook_type: &str, level: Level) -> Vec<&'o str> {
    let mut consumers: Vec<&str> = Vec::new();
    for origin in origins.iter().filter(|o| o.accepts(webhook_type, level)) {
        if !consumers.contains(&origin.consumer()) {
            consumers.push(origin.consumer());
        }
    }
    consumers
}

/// Every origin that can serve `consumer` for this event, in the order to try them: by
/// `priority`, and among equal priorities a weighted draw (an origin of weight 3 comes first
/// three times as often as one of weight 1). `seed` makes the draw; pass a fresh random one.
/// How many one attempt tries is [`crate::attempt::Plan`]'s to decide, after it leaves out
/// the origins that are cooling down.
pub fn origins_for<'o>(
    origins: &'o [Origin],
    consumer: &str,
    webhook_type: &str,
    level: Level,
    seed: u64,
) -> Vec<&'o Origin> {
    let mut pool: Vec<&Origin> = origins
        .iter()
        .filter(|o| o.consumer() == consumer && o.accepts(webhook_type, level))
        .collect();
    crate::sorted::sort_by_key(&mut pool, |o| o.priority);
    let mut rng = SplitMix64(seed);
    let mut ordered = Vec::with_capacity(pool.len());
    while let Some(first) = pool.first() {
        let priority = first.priority;
        let group_len = pool.iter().take_while(|o| o.priority == priority).count();
        let total: u64 = pool
            .iter()
            .take(group_len)
            .map(|o| u64::from(o.weight.max(1)))
            .sum();
        let mut draw = rng.next() % total.max(1);
        let mut pick = 0;
        for (index, origin) in pool.iter().take(group_len).enumerate() {
            let weight = u64::from(origin.weight.max(1));
            if draw < weight {
                pick = index;
                break;
            }
            draw -= weight;
        }
        ordered.push(pool.remove(pick));
    }
    ordered
}

/// A small, well-mixed generator for the weighted draw and an alarm run's draws (not for
/// anything secret): one seed, one sequence, so a simulated run replays exactly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::origin::{parse_origins, DEFAULT_CONSUMER};
    use alloc::string::String;

    #[test]
    fn failover_order_is_by_priority_with_every_origin_listed() {
        let origins = parse_origins(
            r#"[{"name":"c","url":"https://c","priority":2},
                {"name":"a1","url":"https://a1","priority":1},
                {"name":"z","url":"https://z"},
                {"name":"a2","url":"https://a2","priority":1},
                {"name":"b","url":"https://b","priority":3}]"#,
        )
        .expect("valid");
        let order: Vec<String> =
            origins_for(&origins, DEFAULT_CONSUMER, "status.updated", Level::Low, 7)
                .into_iter()
                .map(|o| o.name.clone())
                .collect();
        assert_eq!(order[0], "z");
        let mut middle = order[1..3].to_vec();
        middle.sort();
        assert_eq!(middle, ["a1", "a2"]);
        assert_eq!(
            order[3..],
            ["c", "b"],
            "lowest priority first, none left out"
        );
    }

    #[test]
    fn equal_priorities_share_traffic_by_weight() {
        let origins = parse_origins(
            r#"[{"name":"heavy","url":"https://h","weight":3},{"name":"light","url":"https://l"},
                {"name":"backup","url":"https://b","priority":5,"weight":1000}]"#,
        )
        .expect("valid");
        let mut heavy_first = 0;
        for seed in 0..4000u64 {
            let order = origins_for(
                &origins,
                DEFAULT_CONSUMER,
                "status.updated",
                Level::Low,
                seed,
            );
            assert_eq!(order.len(), 3);
            assert_eq!(
                order[2].name, "backup",
                "a higher priority number always comes last"
            );
            if order[0].name == "heavy" {
                heavy_first += 1;
            }
        }
        // Expected 3/4 of 4000 = 3000; the draw is deterministic per seed, so this cannot flake.
        assert!(
            (2850..=3150).contains(&heavy_first),
            "heavy first {heavy_first} times"
        );
    }

    #[test]
    fn consumers_and_their_origins() {
        let origins = parse_origins(
            r#"[{"name":"main","url":"https://main"},
                {"name":"main-backup","url":"https://backup"},
                {"name":"fraud","url":"https://fraud","consumer":"fraud","risk_levels":["high"]},
                {"name":"crm","url":"https://crm","consumer":"crm","event_types":["user.*"]}]"#,
        )
        .expect("valid");
        assert_eq!(
            consumers_for(&origins, "status.updated", Level::Low),
            ["default"]
        );
        assert_eq!(
            consumers_for(&origins, "status.updated", Level::High),
            ["default", "fraud"]
        );
        assert_eq!(
            consumers_for(&origins, "user.status.updated", Level::Medium),
            ["default", "crm"]
        );
        fn names(list: Vec<&Origin>) -> Vec<String> {
            list.into_iter().map(|o| o.name.clone()).collect()
        }
        let mut both = names(origins_for(
            &origins,
            "default",
            "status.updated",
            Level::Low,
            1,
        ));
        both.sort();
        assert_eq!(both, ["main", "main-backup"]);
        assert!(origins_for(&origins, "fraud", "status.updated", Level::Low, 1).is_empty());
        assert!(origins_for(&origins, "gone", "status.updated", Level::High, 1).is_empty());
    }
}
