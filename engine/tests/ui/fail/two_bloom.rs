use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S {
    #[dim(bloom)]
    pub user: String,
    #[dim(bloom, rollup)]
    pub model: String,
}

fn main() {}
