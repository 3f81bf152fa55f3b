use keplordb::Schema;

// Every mistake is reported in one compile, not just the first.
#[derive(Schema)]
pub struct S {
    #[dim(bloom)]
    pub user: u32,
    #[dim(bloom)]
    pub model: String,
    #[counter]
    pub tokens: i64,
    pub orphan: String,
    #[label]
    pub id: String,
}

fn main() {}
