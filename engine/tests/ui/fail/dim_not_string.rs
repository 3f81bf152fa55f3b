use keplordb::Schema;

#[derive(Schema)]
#[keplordb(id = 1)]
pub struct S {
    #[dim]
    pub user: &'static str,
    #[label]
    pub note: Vec<u8>,
}

fn main() {}
