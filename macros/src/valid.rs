//! Validation of the parsed schema. Every problem is collected with the span of the offending
//! item; the user sees all of them at once.

use proc_macro2::Span;
use syn::Type;

use crate::ast::{Kind, Schema};

/// Limits shared with the engine (`keplordb::MAX_DIMS` and friends).
const MAX_DIMS: usize = 256;
const MAX_COUNTERS: usize = 64;
const MAX_LABELS: usize = 64;
const MAX_ROLLUP_DIMS: usize = 8;

/// Names a field may not take: the fixed columns of every event, and the methods the
/// generated builders already have.
const RESERVED: &[(&str, &str)] = &[
    ("id", "the event id, set with `.id(...)`"),
    ("ts_ns", "the event timestamp, given to `new(ts_ns)`"),
    ("metric", "the primary metric, set with `.metric(...)`"),
    ("latency_ms", "a fixed latency column"),
    ("latency_detail_ms", "a fixed latency column"),
    ("status", "the fixed status column"),
    ("flags", "the fixed flags column"),
    ("counters", "the counters array of every event"),
    ("dims", "the dims array of every event"),
    ("labels", "the labels array of every event"),
    ("into_log_event", "a method of the generated builder"),
    ("into_filter", "a method of the generated filter"),
    ("from_ts", "a method of the generated filter"),
    ("to_ts", "a method of the generated filter"),
    ("status_range", "a method of the generated filter"),
    ("after", "a method of the generated filter"),
    ("new", "the generated constructor"),
    ("filter", "the generated filter constructor"),
];

/// Collected errors.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, msg));
    }
    pub(crate) fn push_error(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

fn is_type(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == name && s.arguments.is_none())
        }
        _ => false,
    }
}

pub(crate) fn check(s: &Schema, errors: &mut Errors) {
    let (mut dims, mut counters, mut labels, mut rollups) = (0usize, 0usize, 0usize, 0usize);
    let mut bloom_seen = false;
    for f in &s.fields {
        let name = f.ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name);
        if let Some((_, what)) = RESERVED.iter().find(|(n, _)| *n == name) {
            errors.push(
                f.ident.span(),
                format!("`{name}` is {what}; rename the field (e.g. `{name}_value`)"),
            );
        }
        match &f.kind {
            Kind::Dim { bloom, rollup } => {
                dims += 1;
                if dims == MAX_DIMS + 1 {
                    errors.push(
                        f.attr,
                        format!("too many dims: a schema has at most {MAX_DIMS}"),
                    );
                }
                if !is_type(&f.ty, "String") {
                    errors.push(span_of(&f.ty), format!("dim `{name}` must be a `String`"));
                }
                if let Some(b) = bloom {
                    if bloom_seen {
                        errors.push(*b, "only one dim can carry the bloom filter: remove `bloom` here or from the other dim");
                    }
                    bloom_seen = true;
                }
                if let Some(r) = rollup {
                    rollups += 1;
                    if rollups == MAX_ROLLUP_DIMS + 1 {
                        errors.push(
                            *r,
                            format!("too many rollup dims: at most {MAX_ROLLUP_DIMS}"),
                        );
                    }
                }
            }
            Kind::Counter => {
                counters += 1;
                if counters == MAX_COUNTERS + 1 {
                    errors.push(
                        f.attr,
                        format!("too many counters: a schema has at most {MAX_COUNTERS}"),
                    );
                }
                if !is_type(&f.ty, "u32") {
                    errors.push(span_of(&f.ty), format!("counter `{name}` must be a `u32` (counters are stored as u32 and summed as u64)"));
                }
            }
            Kind::Label => {
                labels += 1;
                if labels == MAX_LABELS + 1 {
                    errors.push(
                        f.attr,
                        format!("too many labels: a schema has at most {MAX_LABELS}"),
                    );
                }
                if !is_type(&f.ty, "String") {
                    errors.push(span_of(&f.ty), format!("label `{name}` must be a `String`"));
                }
            }
        }
    }
}

fn span_of(ty: &Type) -> Span {
    syn::spanned::Spanned::span(ty)
}
