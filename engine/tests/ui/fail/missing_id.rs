use keplordb::Schema;

#[derive(Schema)]
pub struct S {
    #[dim]
    pub user: String,
}

fn main() {}
