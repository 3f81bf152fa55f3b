//! The typed model of a schema struct, parsed from the derive input.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, FieldsNamed, Ident, LitInt, Type, Visibility};

use crate::valid::Errors;

/// What kind of column a field is.
pub(crate) enum Kind {
    Dim {
        bloom: Option<Span>,
        rollup: Option<Span>,
    },
    Counter,
    Label,
}

/// One field of the schema struct.
pub(crate) struct Field {
    pub ident: Ident,
    pub ty: Type,
    pub kind: Kind,
    /// Span of the column attribute.
    pub attr: Span,
}

/// The schema struct.
pub(crate) struct Schema {
    pub ident: Ident,
    pub vis: Visibility,
    pub id: Option<(u8, Span)>,
    pub fields: Vec<Field>,
}

impl Schema {
    /// Parses the input; structural errors (not a named-field struct, bad attribute syntax) go
    /// to `errors`. Returns `None` only when there is no struct to work on.
    pub(crate) fn parse(input: &DeriveInput, errors: &mut Errors) -> Option<Schema> {
        let named = named_fields(input, errors);
        if !input.generics.params.is_empty() {
            errors.push(
                input.generics.span(),
                "a schema struct cannot be generic: its columns must be known at compile time",
            );
        }
        let id = parse_id(input, errors);
        let named = named?;
        let fields = named
            .named
            .iter()
            .filter_map(|f| parse_field(f, errors))
            .collect();
        Some(Schema {
            ident: input.ident.clone(),
            vis: input.vis.clone(),
            id,
            fields,
        })
    }
}

/// The named fields of the input struct; any other input is an error.
fn named_fields<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<&'a FieldsNamed> {
    match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(n) => Some(n),
            Fields::Unnamed(u) => {
                errors.push(u.span(), "#[derive(Schema)] needs a struct with named fields; tuple structs have no column names");
                None
            }
            Fields::Unit => {
                errors.push(input.ident.span(), "#[derive(Schema)] needs a struct with named fields; this unit struct has no columns");
                None
            }
        },
        Data::Enum(e) => {
            errors.push(
                e.enum_token.span,
                "#[derive(Schema)] works on structs, not enums: declare one struct per event shape",
            );
            None
        }
        Data::Union(u) => {
            errors.push(
                u.union_token.span,
                "#[derive(Schema)] works on structs, not unions",
            );
            None
        }
    }
}

/// A field with its column kind; a field with no column attribute, or more than one, is an
/// error.
fn parse_field(f: &syn::Field, errors: &mut Errors) -> Option<Field> {
    let ident = f.ident.clone()?;
    let mut kinds: Vec<(Kind, Span)> = f
        .attrs
        .iter()
        .filter_map(|attr| column_kind(attr, errors))
        .collect();
    match kinds.len() {
        0 => {
            errors.push(
                ident.span(),
                format!("field `{ident}` has no column attribute: mark it #[dim], #[counter] or #[label]"),
            );
            None
        }
        1 => {
            let (kind, attr) = kinds.remove(0);
            Some(Field {
                ident,
                ty: f.ty.clone(),
                kind,
                attr,
            })
        }
        _ => {
            errors.push(
                kinds[1].1,
                format!("field `{ident}` has more than one column attribute; a field is exactly one of #[dim], #[counter] or #[label]"),
            );
            None
        }
    }
}

/// The column kind a field attribute gives, with the span of its path; `None` for attributes
/// that are not column attributes (a misplaced `#[keplordb(...)]` is an error).
fn column_kind(attr: &Attribute, errors: &mut Errors) -> Option<(Kind, Span)> {
    let path = attr.path();
    if path.is_ident("dim") {
        Some((dim_kind(attr, errors), attr.path().span()))
    } else if path.is_ident("counter") || path.is_ident("label") {
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            errors.push(attr.meta.span(), "#[counter] and #[label] take no options");
        }
        let kind = if path.is_ident("counter") {
            Kind::Counter
        } else {
            Kind::Label
        };
        Some((kind, attr.path().span()))
    } else {
        if path.is_ident("keplordb") {
            errors.push(
                attr.span(),
                "#[keplordb(...)] belongs on the struct, not on a field",
            );
        }
        None
    }
}

/// `#[dim]` and its options (`bloom`, `rollup`).
fn dim_kind(attr: &Attribute, errors: &mut Errors) -> Kind {
    let (mut bloom, mut rollup) = (None, None);
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("bloom") {
                bloom = Some(meta.path.span());
                Ok(())
            } else if meta.path.is_ident("rollup") {
                rollup = Some(meta.path.span());
                Ok(())
            } else {
                Err(meta.error("unknown dim option: use #[dim], #[dim(bloom)], #[dim(rollup)] or #[dim(bloom, rollup)]"))
            }
        });
        if let Err(e) = parsed {
            errors.push_error(e);
        }
    }
    Kind::Dim { bloom, rollup }
}

/// Reads `#[keplordb(id = N)]`.
fn parse_id(input: &DeriveInput, errors: &mut Errors) -> Option<(u8, Span)> {
    let mut id = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("keplordb")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("id") {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u8>() {
                    Ok(v) => id = Some((v, lit.span())),
                    Err(_) => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "schema id {} is out of range: use 0 to 255 (it is stored as a u8)",
                                lit.base10_digits()
                            ),
                        ))
                    }
                }
                Ok(())
            } else {
                Err(meta.error("unknown keplordb option: the only option is `id = N`"))
            }
        });
        if let Err(e) = parsed {
            errors.push_error(e);
        }
    }
    if id.is_none() && !input.attrs.iter().any(|a| a.path().is_ident("keplordb")) {
        errors.push(
            input.ident.span(),
            "missing #[keplordb(id = N)]: every schema needs an id (0 to 255), recorded in its data files so another schema cannot misread them",
        );
    }
    id
}
