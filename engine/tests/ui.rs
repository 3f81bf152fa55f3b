//! Compile-time validation of `#[derive(Schema)]` (trybuild): every rejected schema has a
//! committed `.stderr` with the span and the message that says how to fix it.

#[test]
fn derive_schema_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
