//! Limits that protect the endpoint: a cost budget per credential (the
//! query's complexity, with list fields counted by page size) and a cap on
//! aliases. (The throttle on sign-in attempts is the domain's:
//! `domain::sessions::LoginThrottle`.)
//!
//! The cost budget is a token bucket (GCRA, from `governor`): it holds
//! `capacity` units and refills `refill_per_second`. A request whose cost does
//! not fit is refused before it runs with `RATE_LIMITED` and how long to wait;
//! every answer reports its cost in `extensions.cost`.
//!
//! The cost is the validated document's complexity, read by validating the
//! document against a schema of its own whose only extension, [`Pricing`],
//! stops every operation before it runs ([`price`]). The schema that runs
//! operations has no extension at all: an extension, any extension, puts
//! async-graphql on its slow path for every field it resolves.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{
    Name, Request, Response, ServerError, ValidationResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextValidation},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use uuid::Uuid;

use super::{JourneymapSchema, error};

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A staff member or API token.
    Actor(Uuid),
    /// An unauthenticated caller, by address.
    Address(IpAddr),
}

type Bucket =
    RateLimiter<RateKey, DefaultKeyedStateStore<RateKey>, DefaultClock, StateInformationMiddleware>;

/// The outcome of spending from a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Allowed; this much is left.
    Allowed { remaining: u32 },
    /// Refused; try again after this long.
    Refused { retry_after: Duration },
}

/// Cost budgets per credential.
pub struct CostBudget {
    bucket: Option<Bucket>,
    clock: DefaultClock,
    pub capacity: u32,
    pub refill_per_second: u32,
}

impl CostBudget {
    /// A budget of `capacity` units refilling `refill_per_second`; zero refill
    /// turns limiting off.
    pub fn new(capacity: u32, refill_per_second: u32) -> Self {
        let bucket = NonZeroU32::new(refill_per_second).map(|refill| {
            let burst = NonZeroU32::new(capacity.max(refill.get())).expect("positive");
            RateLimiter::keyed(Quota::per_second(refill).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>()
        });
        Self {
            bucket,
            clock: DefaultClock::default(),
            capacity,
            refill_per_second,
        }
    }

    /// Spends `cost` from `key`'s budget.
    pub fn spend(&self, key: &RateKey, cost: u32) -> Spend {
        let Some(bucket) = &self.bucket else {
            return Spend::Allowed {
                remaining: u32::MAX,
            };
        };
        let cost = NonZeroU32::new(cost.max(1)).expect("positive");
        match bucket.check_key_n(key, cost) {
            Ok(Ok(state)) => Spend::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Ok(Err(not_until)) => Spend::Refused {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
            // More than the bucket can ever hold: wait a full refill.
            Err(_) => Spend::Refused {
                retry_after: Duration::from_secs_f64(
                    self.capacity as f64 / self.refill_per_second.max(1) as f64,
                ),
            },
        }
    }

    /// Forgets idle callers' buckets.
    pub fn forget_idle(&self) {
        if let Some(bucket) = &self.bucket {
            bucket.retain_recent();
            bucket.shrink_to_fit();
        }
    }
}

/// The extension of the pricing schema: it notes the complexity validation
/// found and stops the operation before anything runs.
pub struct Pricing;

impl ExtensionFactory for Pricing {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PricingExtension(Mutex::new(None)))
    }
}

struct PricingExtension(Mutex<Option<usize>>);

/// The response extension the pricing schema answers with.
const COMPLEXITY: &str = "complexity";

#[async_trait::async_trait]
impl Extension for PricingExtension {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        *self.0.lock().expect("pricing lock") = Some(result.complexity);
        Ok(result)
    }

    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        let complexity = self.0.lock().expect("pricing lock").take().unwrap_or(0);
        Response::new(Value::Null).extension(COMPLEXITY, Value::from(complexity as u64))
    }
}

/// The cost of `request` (parsed already): its validated document's
/// complexity, found by the pricing schema without running anything. `None`
/// when the document does not validate; running it reports why.
pub async fn price(pricing: &JourneymapSchema, request: &mut Request) -> Option<usize> {
    let mut priced = Request::new(request.query.clone()).variables(request.variables.clone());
    priced.operation_name = request.operation_name.clone();
    if let Ok(document) = request.parsed_query() {
        priced.set_parsed_query(document.clone());
    }
    let answer = pricing.execute(priced).await;
    match answer.extensions.get(COMPLEXITY) {
        Some(Value::Number(n)) if answer.errors.is_empty() => {
            n.as_u64().map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        }
        _ => None,
    }
}

/// What a request was charged.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    pub cost: usize,
    pub remaining: u32,
}

impl CostBudget {
    /// Charges `cost` to `key`, or the `RATE_LIMITED` error to answer with.
    pub fn charge(&self, key: &RateKey, cost: usize) -> Result<Charge, ServerError> {
        let cost = cost.max(1);
        match self.spend(key, u32::try_from(cost).unwrap_or(u32::MAX)) {
            Spend::Allowed { remaining } => Ok(Charge { cost, remaining }),
            Spend::Refused { retry_after } => {
                let mut e = rate_limited(
                    &format!("this request costs {cost} and the budget is spent; retry later"),
                    retry_after,
                );
                if let Some(extensions) = e.extensions.as_mut() {
                    extensions.set("cost", cost as u64);
                }
                Err(e)
            }
        }
    }

    /// `response` with what it cost in `extensions.cost`.
    pub fn report(&self, response: Response, charge: Charge) -> Response {
        let cost = if self.refill_per_second > 0 {
            serde_json::json!({
                "requested": charge.cost,
                "remaining": charge.remaining,
                "capacity": self.capacity,
                "refillPerSecond": self.refill_per_second,
            })
        } else {
            serde_json::json!({ "requested": charge.cost })
        };
        response.extension("cost", Value::from_json(cost).unwrap_or(Value::Null))
    }
}

/// A `RATE_LIMITED` error.
pub fn rate_limited(message: &str, wait: Duration) -> ServerError {
    error::coded_retry_after(message, error::code::RATE_LIMITED, wait)
}

/// How many aliases a document uses, fragments included (a fragment counts
/// as often as it is spread). Each fragment is walked once: this runs before
/// validation, and a document spreading one fragment twice at every level
/// would otherwise cost exponential time. Fragment cycles count nothing here
/// (validation refuses them).
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    fn walk(
        set: &SelectionSet,
        document: &ExecutableDocument,
        fragments: &mut HashMap<Name, Option<usize>>,
    ) -> usize {
        let mut total = 0usize;
        for item in &set.items {
            total = total.saturating_add(match &item.node {
                Selection::Field(field) => usize::from(field.node.alias.is_some())
                    .saturating_add(walk(&field.node.selection_set.node, document, fragments)),
                Selection::InlineFragment(fragment) => {
                    walk(&fragment.node.selection_set.node, document, fragments)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    match fragments.get(name) {
                        Some(Some(counted)) => *counted,
                        // Being counted further up: a cycle.
                        Some(None) => 0,
                        None => match document.fragments.get(name) {
                            Some(fragment) => {
                                fragments.insert(name.clone(), None);
                                let counted =
                                    walk(&fragment.node.selection_set.node, document, fragments);
                                fragments.insert(name.clone(), Some(counted));
                                counted
                            }
                            None => 0,
                        },
                    }
                }
            });
        }
        total
    }
    let mut fragments = HashMap::new();
    document
        .operations
        .iter()
        .map(|(_, operation)| walk(&operation.node.selection_set.node, document, &mut fragments))
        .fold(0usize, usize::saturating_add)
}

/// Refuses a document with more than `max` aliases, over HTTP and WebSocket
/// alike. A document that does not parse passes: execution reports that.
pub fn check_aliases(request: &mut async_graphql::Request, max: usize) -> Result<(), ServerError> {
    let aliases = request.parsed_query().map(count_aliases).unwrap_or(0);
    if aliases > max {
        return Err(error::coded(
            format!("the document uses {aliases} aliases; at most {max} are allowed"),
            error::code::GRAPHQL_VALIDATION_FAILED,
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_refuse_and_recover() {
        let budget = CostBudget::new(100, 50);
        let key = RateKey::Actor(Uuid::nil());
        assert!(matches!(
            budget.spend(&key, 80),
            Spend::Allowed { remaining: 20 }
        ));
        match budget.spend(&key, 80) {
            Spend::Refused { retry_after } => assert!(retry_after <= Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(budget.spend(&key, 1000), Spend::Refused { .. }));
        let off = CostBudget::new(0, 0);
        assert!(matches!(off.spend(&key, 1_000_000), Spend::Allowed { .. }));
    }

    #[test]
    fn aliases_are_counted_through_fragments() {
        let document = async_graphql::parser::parse_query(
            "{ a: viewer { n: name } ...F } fragment F on Query { b: viewer { id } }",
        )
        .unwrap();
        assert_eq!(count_aliases(&document), 3);
    }
}
