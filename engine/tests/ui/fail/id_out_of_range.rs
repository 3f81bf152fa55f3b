use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 256)]
pub struct S {
    #[dim]
    pub user: String,
}

fn main() {}
