//! `#[derive(Schema)]` for keplordb. Use it through the re-export `keplordb::Schema`.
//!
//! The pipeline follows thiserror's: parse the input into a typed model (`ast`), validate it
//! collecting every error with its span (`valid`), then expand (`expand`). Generated code only
//! names `::keplordb` and `::std` paths.

#![forbid(unsafe_code)]

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives a typed schema. See the `keplordb` crate docs for the attributes:
/// `#[keplordb(id = N)]` on the struct; `#[dim]`, `#[dim(bloom)]`, `#[dim(rollup)]`,
/// `#[counter]` (u32) and `#[label]` (String) on its fields.
#[proc_macro_derive(Schema, attributes(keplordb, dim, counter, label))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    let mut errors = valid::Errors::default();
    let model = ast::Schema::parse(&input, &mut errors);
    if let Some(model) = &model {
        valid::check(model, &mut errors);
    }
    match (errors.into_result(), model) {
        (Ok(()), Some(model)) => expand::expand(&model).into(),
        (Err(e), _) => e.to_compile_error().into(),
        (Ok(()), None) => syn::Error::new_spanned(&input.ident, "schema could not be parsed")
            .to_compile_error()
            .into(),
    }
}
