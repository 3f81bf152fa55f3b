use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub enum S {
    A,
    B,
}

fn main() {}
