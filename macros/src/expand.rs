//! Code generation. Every path is absolute (`::keplordb`, `::std`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{Kind, Schema};

pub(crate) fn expand(s: &Schema) -> TokenStream {
    let name = &s.ident;
    let vis = &s.vis;
    let id = s.id.map_or(0, |(v, _)| v);
    let builder = format_ident!("{}Builder", name);
    let filter = format_ident!("{}Filter", name);
    let fields_trait = format_ident!("{}Fields", name);
    let engine_alias = format_ident!("{}Engine", name);

    let dims: Vec<_> = s
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Dim { .. }))
        .collect();
    let counters: Vec<_> = s
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Counter))
        .collect();
    let labels: Vec<_> = s
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Label))
        .collect();
    let (nd, nc, nl) = (dims.len(), counters.len(), labels.len());
    let dim_names: Vec<String> = dims.iter().map(|f| unraw(&f.ident)).collect();
    let counter_names: Vec<String> = counters.iter().map(|f| unraw(&f.ident)).collect();
    let label_names: Vec<String> = labels.iter().map(|f| unraw(&f.ident)).collect();
    let bloom = dims
        .iter()
        .position(|f| matches!(f.kind, Kind::Dim { bloom: Some(_), .. }));
    let bloom = match bloom {
        Some(i) => quote!(::std::option::Option::Some(#i)),
        None => quote!(::std::option::Option::None),
    };
    let rollups: Vec<usize> = dims
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
    let log_event = quote!(::keplordb::LogEvent<#nd, #nc, #nl>);
    let event_ref = quote!(::keplordb::EventRef<#nd, #nc, #nl>);

    let dim_setters = dims.iter().enumerate().map(|(i, f)| {
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
    let counter_setters = counters.iter().enumerate().map(|(i, f)| {
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
    let label_setters = labels.iter().enumerate().map(|(i, f)| {
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
    let filter_setters = dims.iter().enumerate().map(|(i, f)| {
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
    let getter_sigs = s.fields.iter().map(|f| {
        let ident = &f.ident;
        let doc = format!("The `{}` column.", unraw(ident));
        match f.kind {
            Kind::Counter => quote!(#[doc = #doc] fn #ident(&self) -> u32;),
            _ => quote!(#[doc = #doc] fn #ident(&self) -> &str;),
        }
    });
    let getter_bodies: Vec<TokenStream> = s
        .fields
        .iter()
        .map(|f| {
            let ident = &f.ident;
            let pos = |kind: fn(&Kind) -> bool| {
                s.fields
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
        })
        .collect();
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

    let builder_doc = format!("Builds one `{name}` event; `{name}::new(ts_ns)` starts it.");
    let filter_doc = format!("Typed filter over `{name}` events; `{name}::filter()` starts it.");
    let trait_doc = format!("Named getters for `{name}` events read back from the engine.");
    let alias_doc = format!("The engine storing `{name}` events.");

    quote! {
        impl ::keplordb::Schema for #name {
            const SCHEMA_ID: u8 = #id;
            const DIM_NAMES: &'static [&'static str] = &[#(#dim_names),*];
            const COUNTER_NAMES: &'static [&'static str] = &[#(#counter_names),*];
            const LABEL_NAMES: &'static [&'static str] = &[#(#label_names),*];
            const BLOOM_DIM: ::std::option::Option<usize> = #bloom;
            const ROLLUP_DIMS: &'static [usize] = &[#(#rollups),*];
        }

        #[doc = #alias_doc]
        #vis type #engine_alias = ::keplordb::Engine<#nd, #nc, #nl>;

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

        #[doc = #builder_doc]
        #[derive(Clone, Debug)]
        #[must_use]
        #vis struct #builder {
            event: #log_event,
        }

        #[allow(dead_code)]
        impl #builder {
            #(#dim_setters)*
            #(#counter_setters)*
            #(#label_setters)*

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

fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
}
