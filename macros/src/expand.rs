//! Code generation. Every path is absolute (`::keplordb`, `::std`).
//!
//! `expand` concatenates the generated items in a fixed order, each group made by one method of
//! `Gen`: the `Schema` impl, the engine alias, the schema type's own functions, the event
//! builder, the filter builder, and the getter trait with its impls.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{Field, Kind, Schema};

pub(crate) fn expand(s: &Schema) -> TokenStream {
    let g = Gen::new(s);
    [
        g.schema_impl(),
        g.engine_alias(),
        g.inherent_impl(),
        g.builder(),
        g.filter(),
        g.getters(),
    ]
    .into_iter()
    .collect()
}

/// What the generated items share: the schema, the names of the generated types, its columns
/// by kind and its event types.
struct Gen<'a> {
    s: &'a Schema,
    builder: Ident,
    filter: Ident,
    fields_trait: Ident,
    engine_alias: Ident,
    dims: Vec<&'a Field>,
    counters: Vec<&'a Field>,
    labels: Vec<&'a Field>,
    /// `::keplordb::LogEvent<D, C, L>` with the schema's column counts.
    log_event: TokenStream,
    /// `::keplordb::EventRef<D, C, L>` with the schema's column counts.
    event_ref: TokenStream,
}

impl<'a> Gen<'a> {
    fn new(s: &'a Schema) -> Gen<'a> {
        let name = &s.ident;
        let of_kind = |kind: fn(&Kind) -> bool| -> Vec<&Field> {
            s.fields.iter().filter(|f| kind(&f.kind)).collect()
        };
        let dims = of_kind(|k| matches!(k, Kind::Dim { .. }));
        let counters = of_kind(|k| matches!(k, Kind::Counter));
        let labels = of_kind(|k| matches!(k, Kind::Label));
        let (nd, nc, nl) = (dims.len(), counters.len(), labels.len());
        Gen {
            s,
            builder: format_ident!("{}Builder", name),
            filter: format_ident!("{}Filter", name),
            fields_trait: format_ident!("{}Fields", name),
            engine_alias: format_ident!("{}Engine", name),
            dims,
            counters,
            labels,
            log_event: quote!(::keplordb::LogEvent<#nd, #nc, #nl>),
            event_ref: quote!(::keplordb::EventRef<#nd, #nc, #nl>),
        }
    }

    /// The number of dims, counters and labels.
    fn counts(&self) -> (usize, usize, usize) {
        (self.dims.len(), self.counters.len(), self.labels.len())
    }

    /// `impl ::keplordb::Schema`: the id, the column names, the bloom dim and the rollup dims.
    fn schema_impl(&self) -> TokenStream {
        let name = &self.s.ident;
        let id = self.s.id.map_or(0, |(v, _)| v);
        let dim_names = names(&self.dims);
        let counter_names = names(&self.counters);
        let label_names = names(&self.labels);
        let bloom = self
            .dims
            .iter()
            .position(|f| matches!(f.kind, Kind::Dim { bloom: Some(_), .. }));
        let bloom = match bloom {
            Some(i) => quote!(::std::option::Option::Some(#i)),
            None => quote!(::std::option::Option::None),
        };
        let rollups: Vec<usize> = self
            .dims
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                matches!(
                    f.kind,
                    Kind::Dim {
                        rollup: Some(_),
                        ..
                    }
                )
            })
            .map(|(i, _)| i)
            .collect();
        quote! {
            impl ::keplordb::Schema for #name {
                const SCHEMA_ID: u8 = #id;
                const DIM_NAMES: &'static [&'static str] = &[#(#dim_names),*];
                const COUNTER_NAMES: &'static [&'static str] = &[#(#counter_names),*];
                const LABEL_NAMES: &'static [&'static str] = &[#(#label_names),*];
                const BLOOM_DIM: ::std::option::Option<usize> = #bloom;
                const ROLLUP_DIMS: &'static [usize] = &[#(#rollups),*];
            }
        }
    }

    /// `<Name>Engine`, the typed engine of this schema.
    fn engine_alias(&self) -> TokenStream {
        let (name, vis, engine_alias) = (&self.s.ident, &self.s.vis, &self.engine_alias);
        let (nd, nc, nl) = self.counts();
        let alias_doc = format!("The engine storing `{name}` events.");
        quote! {
            #[doc = #alias_doc]
            #vis type #engine_alias = ::keplordb::Engine<#nd, #nc, #nl>;
        }
    }

    /// The schema type's own items: column counts, `new`, `filter`, `default_config`, `open`,
    /// `at` and `from_event`.
    fn inherent_impl(&self) -> TokenStream {
        let Gen {
            s,
            builder,
            filter,
            fields_trait,
            engine_alias,
            log_event,
            event_ref,
            ..
        } = self;
        let name = &s.ident;
        let (nd, nc, nl) = self.counts();
        let from_event_fields = s.fields.iter().map(|f| {
            let ident = &f.ident;
            quote!(#ident: #fields_trait::#ident(event).into())
        });
        let to_builder = s.fields.iter().map(|f| {
            let ident = &f.ident;
            match f.kind {
                Kind::Counter => quote!(.#ident(self.#ident)),
                _ => quote!(.#ident(::std::clone::Clone::clone(&self.#ident))),
            }
        });
        quote! {
            #[allow(dead_code)]
            impl #name {
                /// Number of dims.
                pub const DIMS: usize = #nd;
                /// Number of counters.
                pub const COUNTERS: usize = #nc;
                /// Number of labels.
                pub const LABELS: usize = #nl;

                /// Starts an event at `ts_ns` (nanoseconds since the Unix epoch).
                pub fn new(ts_ns: i64) -> #builder {
                    #builder { event: <#log_event>::new(ts_ns) }
                }

                /// Starts a filter that matches every event.
                pub fn filter() -> #filter {
                    #filter { filter: ::keplordb::QueryFilter::<#nd>::new() }
                }

                /// Engine configuration for this schema at `data_dir`.
                pub fn default_config(data_dir: ::std::path::PathBuf) -> ::keplordb::EngineConfig {
                    <Self as ::keplordb::Schema>::schema_config(data_dir)
                }

                /// Opens (creating if needed) an engine for this schema at `data_dir`.
                pub fn open(data_dir: impl ::std::convert::Into<::std::path::PathBuf>) -> ::keplordb::Result<#engine_alias> {
                    ::keplordb::Engine::open(Self::default_config(data_dir.into()))
                }

                /// This value's columns as an event at `ts_ns`, ready for the fixed columns.
                pub fn at(&self, ts_ns: i64) -> #builder {
                    Self::new(ts_ns) #(#to_builder)*
                }

                /// The schema's columns of an event read back from the engine.
                pub fn from_event(event: &#event_ref) -> Self {
                    #name { #(#from_event_fields),* }
                }
            }
        }
    }

    /// `<Name>Builder`: one setter per column, the fixed columns' setters, and the conversion
    /// into a `LogEvent`.
    fn builder(&self) -> TokenStream {
        let Gen {
            s,
            builder,
            log_event,
            ..
        } = self;
        let (name, vis) = (&s.ident, &s.vis);
        let builder_doc = format!("Builds one `{name}` event; `{name}::new(ts_ns)` starts it.");
        let setters = self.column_setters();
        quote! {
            #[doc = #builder_doc]
            #[derive(Clone, Debug)]
            #[must_use]
            #vis struct #builder {
                event: #log_event,
            }

            #[allow(dead_code)]
            impl #builder {
                #setters

                /// Sets the event id (unique; generated when not set).
                pub fn id(mut self, id: impl ::std::convert::Into<::std::string::String>) -> Self {
                    self.event.id = id.into();
                    self
                }
                /// Sets the primary metric.
                pub fn metric(mut self, value: i64) -> Self {
                    self.event.metric = value;
                    self
                }
                /// Sets the latency in milliseconds.
                pub fn latency_ms(mut self, value: u32) -> Self {
                    self.event.latency_ms = value;
                    self
                }
                /// Sets the detailed latency in milliseconds.
                pub fn latency_detail_ms(mut self, value: u32) -> Self {
                    self.event.latency_detail_ms = value;
                    self
                }
                /// Sets the status code.
                pub fn status(mut self, value: u16) -> Self {
                    self.event.status = value;
                    self
                }
                /// Sets the flags.
                pub fn flags(mut self, value: impl ::std::convert::Into<::keplordb::EventFlags>) -> Self {
                    self.event.flags = value.into();
                    self
                }
                /// The finished event (with a generated id if none was set).
                pub fn into_log_event(self) -> #log_event {
                    let mut event = self.event;
                    if event.id.is_empty() {
                        event.id = ::keplordb::generate_id();
                    }
                    event
                }
            }

            impl ::std::convert::From<#builder> for #log_event {
                fn from(b: #builder) -> Self {
                    b.into_log_event()
                }
            }
        }
    }

    /// The builder's setters of the schema's columns: dims, then counters, then labels.
    fn column_setters(&self) -> TokenStream {
        let dim_setters = self.dims.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            let doc = format!("Sets dim `{}`.", unraw(ident));
            quote! {
                #[doc = #doc]
                pub fn #ident(mut self, value: impl ::std::convert::Into<::std::string::String>) -> Self {
                    self.event.dims[#i] = value.into();
                    self
                }
            }
        });
        let counter_setters = self.counters.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            let doc = format!("Sets counter `{}`.", unraw(ident));
            quote! {
                #[doc = #doc]
                pub fn #ident(mut self, value: u32) -> Self {
                    self.event.counters[#i] = value;
                    self
                }
            }
        });
        let label_setters = self.labels.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            let doc = format!("Sets label `{}`.", unraw(ident));
            quote! {
                #[doc = #doc]
                pub fn #ident(mut self, value: impl ::std::convert::Into<::std::string::String>) -> Self {
                    self.event.labels[#i] = value.into();
                    self
                }
            }
        });
        quote! {
            #(#dim_setters)*
            #(#counter_setters)*
            #(#label_setters)*
        }
    }

    /// `<Name>Filter`: one equality setter per dim, time and status ranges, a cursor, and the
    /// conversion into a `QueryFilter`.
    fn filter(&self) -> TokenStream {
        let Gen { s, filter, .. } = self;
        let (name, vis) = (&s.ident, &s.vis);
        let (nd, _, _) = self.counts();
        let filter_doc =
            format!("Typed filter over `{name}` events; `{name}::filter()` starts it.");
        let filter_setters = self.dims.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            let doc = format!("Matches events whose `{}` equals `value`.", unraw(ident));
            quote! {
                #[doc = #doc]
                pub fn #ident(mut self, value: impl ::std::convert::Into<::std::string::String>) -> Self {
                    self.filter.dims[#i] = ::std::option::Option::Some(value.into());
                    self
                }
            }
        });
        quote! {
            #[doc = #filter_doc]
            #[derive(Clone, Debug)]
            #[must_use]
            #vis struct #filter {
                filter: ::keplordb::QueryFilter<#nd>,
            }

            #[allow(dead_code)]
            impl #filter {
                #(#filter_setters)*

                /// Events at or after `ts_ns`.
                pub fn from_ts(mut self, ts_ns: i64) -> Self {
                    self.filter.from_ts_ns = ::std::option::Option::Some(ts_ns);
                    self
                }
                /// Events before `ts_ns`.
                pub fn to_ts(mut self, ts_ns: i64) -> Self {
                    self.filter.to_ts_ns = ::std::option::Option::Some(ts_ns);
                    self
                }
                /// Events with `min <= status < max`.
                pub fn status_range(mut self, min: u16, max: u16) -> Self {
                    self.filter.status_min = ::std::option::Option::Some(min);
                    self.filter.status_max = ::std::option::Option::Some(max);
                    self
                }
                /// Continues after `cursor` (the last event of the previous page).
                pub fn after(mut self, cursor: impl ::std::convert::Into<::keplordb::Cursor>) -> Self {
                    self.filter.cursor = ::std::option::Option::Some(cursor.into());
                    self
                }
                /// The engine's filter.
                pub fn into_filter(self) -> ::keplordb::QueryFilter<#nd> {
                    self.filter
                }
            }

            impl ::std::convert::From<#filter> for ::keplordb::QueryFilter<#nd> {
                fn from(f: #filter) -> Self {
                    f.filter
                }
            }
        }
    }

    /// `<Name>Fields`: a getter per column, implemented for `EventRef` and `LogEvent`.
    fn getters(&self) -> TokenStream {
        let Gen {
            s,
            fields_trait,
            log_event,
            event_ref,
            ..
        } = self;
        let (name, vis) = (&s.ident, &s.vis);
        let trait_doc = format!("Named getters for `{name}` events read back from the engine.");
        let getter_sigs = s.fields.iter().map(|f| {
            let ident = &f.ident;
            let doc = format!("The `{}` column.", unraw(ident));
            match f.kind {
                Kind::Counter => quote!(#[doc = #doc] fn #ident(&self) -> u32;),
                _ => quote!(#[doc = #doc] fn #ident(&self) -> &str;),
            }
        });
        let getter_bodies: Vec<TokenStream> = s.fields.iter().map(|f| self.getter(f)).collect();
        quote! {
            #[doc = #trait_doc]
            #vis trait #fields_trait {
                #(#getter_sigs)*
            }

            impl #fields_trait for #event_ref {
                #(#getter_bodies)*
            }

            impl #fields_trait for #log_event {
                #(#getter_bodies)*
            }
        }
    }

    /// The getter of column `f`: it reads the event's array of `f`'s kind at `f`'s index.
    fn getter(&self, f: &Field) -> TokenStream {
        let ident = &f.ident;
        let pos = |kind: fn(&Kind) -> bool| {
            self.s
                .fields
                .iter()
                .filter(|g| kind(&g.kind))
                .position(|g| g.ident == f.ident)
                .unwrap_or(0)
        };
        match f.kind {
            Kind::Dim { .. } => {
                let i = pos(|k| matches!(k, Kind::Dim { .. }));
                quote!(fn #ident(&self) -> &str { &self.dims[#i] })
            }
            Kind::Counter => {
                let i = pos(|k| matches!(k, Kind::Counter));
                quote!(fn #ident(&self) -> u32 { self.counters[#i] })
            }
            Kind::Label => {
                let i = pos(|k| matches!(k, Kind::Label));
                quote!(fn #ident(&self) -> &str { &self.labels[#i] })
            }
        }
    }
}

/// The column names of `fields`, without `r#`.
fn names(fields: &[&Field]) -> Vec<String> {
    fields.iter().map(|f| unraw(&f.ident)).collect()
}

fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
}
