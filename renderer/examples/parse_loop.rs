//! Parses the files given on the command line N times (for profiling).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args[0].parse().expect("iterations");
    let files: Vec<Vec<u8>> = args[1..]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let mut total = 0;
    for _ in 0..n {
        for f in &files {
            total += plimsoll_renderer::yaml::parse_checked(f, 0)
                .expect("parse")
                .len();
        }
    }
    println!("{total}");
}
