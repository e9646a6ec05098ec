use embed_core::{Backend, Embedder};
use std::time::Instant;
fn main() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let dir = std::env::args().nth(1).unwrap();
    let long = std::env::args().nth(2).is_some();
    let names: Vec<String> = include_str!("../../../demo/recipes.txt")
        .lines()
        .map(|l| {
            if long {
                format!("황금레시피 {l}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let batch: Vec<&str> = names.iter().map(String::as_str).collect();
    let e = Embedder::load_with(std::path::Path::new(&dir), Backend::Fast).unwrap();
    let toks: usize = batch.iter().map(|t| e.tokenize(t).unwrap().len()).sum();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < 6.0 {
        e.embed_many(
            &batch,
            true,
            std::env::var("CHUNK").map_or(32, |c| c.parse().unwrap()),
            || {},
        )
        .unwrap();
        n += batch.len();
    }
    println!(
        "{:.1} texts/s, {:.1} tokens/text",
        n as f64 / t.elapsed().as_secs_f64(),
        toks as f64 / batch.len() as f64
    );
}
