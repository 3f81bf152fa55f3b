use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S(String, u32);

fn main() {}
