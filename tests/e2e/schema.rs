//! The committed SDL is the schema the server serves.

#[test]
fn schema_graphql_matches_the_server() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let served = journeymap::sdl();
    assert!(
        committed == served,
        "schema.graphql is out of date; regenerate it with `cargo run -p journeymap -- schema > schema.graphql`"
    );
}
