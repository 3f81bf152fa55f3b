use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S {
    #[counter]
    pub metric: u32,
    #[dim]
    pub status: String,
}

fn main() {}
