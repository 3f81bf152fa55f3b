use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S {
    #[dim]
    pub user: String,
    pub model: String,
    #[dim]
    #[label]
    pub both: String,
}

fn main() {}
