use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S {
    #[counter]
    pub tokens: u64,
}

fn main() {}
