//! Documents clients send again and again (a front end's few dozen
//! operations), remembered parsed and priced, so that a repeated operation
//! is neither parsed again nor validated a second time to learn its cost.
//!
//! A document is remembered by its text; its cost by the operation name and
//! variables too (page sizes may be variables). Only what parsed, and prices
//! the pricing schema found, are remembered; everything else is worked out
//! per request as before. Both are bounded: [`DOCUMENTS`] documents of at
//! most [`LARGEST`] bytes, [`PRICES_PER_DOCUMENT`] prices each, least
//! recently used first out.

use std::{num::NonZeroUsize, sync::Mutex};

use async_graphql::{Request, parser::types::ExecutableDocument};
use lru::LruCache;

/// How many documents are remembered.
pub const DOCUMENTS: usize = 512;
/// The largest document remembered, in bytes.
pub const LARGEST: usize = 16 * 1024;
/// How many (operation, variables) prices are remembered per document.
pub const PRICES_PER_DOCUMENT: usize = 64;

/// Parsed documents and their prices, by text.
pub struct Documents {
    seen: Mutex<LruCache<String, Seen>>,
}

struct Seen {
    document: ExecutableDocument,
    prices: LruCache<PriceKey, usize>,
}

/// What besides the text a price depends on: the operation and the variables
/// (serialized).
#[derive(Hash, PartialEq, Eq)]
struct PriceKey {
    operation: Option<String>,
    variables: String,
}

impl PriceKey {
    fn of(request: &Request) -> Option<Self> {
        Some(Self {
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).ok()?,
        })
    }
}

impl Default for Documents {
    fn default() -> Self {
        Self {
            seen: Mutex::new(LruCache::new(
                NonZeroUsize::new(DOCUMENTS).expect("positive"),
            )),
        }
    }
}

impl Documents {
    /// Gives `request` its parsed document when its text was parsed before.
    pub fn recall(&self, request: &mut Request) {
        if request.query.len() > LARGEST {
            return;
        }
        let mut seen = self.seen.lock().expect("documents lock");
        if let Some(known) = seen.get(&request.query) {
            request.set_parsed_query(known.document.clone());
        }
    }

    /// Remembers the document `request` parsed to.
    pub fn remember(&self, request: &mut Request) {
        if request.query.len() > LARGEST {
            return;
        }
        let mut seen = self.seen.lock().expect("documents lock");
        if seen.contains(&request.query) {
            return;
        }
        let Ok(document) = request.parsed_query() else {
            return;
        };
        let document = document.clone();
        {
            seen.put(
                request.query.clone(),
                Seen {
                    document,
                    prices: LruCache::new(
                        NonZeroUsize::new(PRICES_PER_DOCUMENT).expect("positive"),
                    ),
                },
            );
        }
    }

    /// The price found for the same document, operation and variables before.
    pub fn price(&self, request: &Request) -> Option<usize> {
        let key = PriceKey::of(request)?;
        let mut seen = self.seen.lock().expect("documents lock");
        seen.get_mut(&request.query)?.prices.get(&key).copied()
    }

    /// Remembers the price of `request` (whose document is remembered).
    pub fn priced(&self, request: &Request, price: usize) {
        let Some(key) = PriceKey::of(request) else {
            return;
        };
        let mut seen = self.seen.lock().expect("documents lock");
        if let Some(known) = seen.get_mut(&request.query) {
            known.prices.put(key, price);
        }
    }

    /// How many documents are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().expect("documents lock").len()
    }

    /// True when nothing is remembered.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, first: i32) -> Request {
        Request::new(query).variables(async_graphql::Variables::from_json(
            serde_json::json!({ "first": first }),
        ))
    }

    #[test]
    fn a_repeated_document_is_parsed_once_and_priced_per_variables() {
        let documents = Documents::default();
        let text = "query($first: Int) { patients(first: $first) { nodes { id } } }";
        let mut first = request(text, 5);
        documents.recall(&mut first);
        documents.remember(&mut first);
        assert_eq!(documents.price(&first), None);
        documents.priced(&first, 6);

        let mut again = request(text, 5);
        documents.recall(&mut again);
        assert!(again.parsed_query().is_ok());
        assert_eq!(documents.price(&again), Some(6));
        // Other variables, other price.
        assert_eq!(documents.price(&request(text, 50)), None);
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn what_does_not_parse_and_large_documents_are_not_kept() {
        let documents = Documents::default();
        let mut broken = Request::new("query {");
        documents.remember(&mut broken);
        let large = format!("{{ {} }}", "__typename ".repeat(LARGEST / 10));
        let mut large = Request::new(large);
        documents.remember(&mut large);
        assert!(documents.is_empty());
    }
}
