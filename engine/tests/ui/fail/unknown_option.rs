use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1, name = "s")]
pub struct S {
    #[dim(bloom, index)]
    pub user: String,
    #[counter(sum)]
    pub n: u32,
}

fn main() {}
