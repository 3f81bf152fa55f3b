use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S<T> {
    #[dim]
    pub user: String,
    #[label]
    pub extra: T,
}

fn main() {}
