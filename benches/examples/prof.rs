// Temporary profiling driver (not committed).
use redoubt_engine::{Engine, EngineOptions, Key, Subscript, Value};
use std::time::Instant;

fn seq_key(mut i: u64) -> [u8; 16] {
    let mut k = [b'0'; 16];
    for slot in k.iter_mut().rev() {
        *slot = b'0' + (i % 10) as u8;
        i /= 10;
    }
    k
}
fn rnd(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
fn hexkey(mut x: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = [0u8; 16];
    for s in k.iter_mut() {
        *s = HEX[(x & 15) as usize];
        x >>= 4;
    }
    k
}
fn key(raw: &[u8]) -> Key {
    Key::new(
        "B",
        vec![Subscript::Str(String::from_utf8_lossy(raw).into_owned())],
    )
    .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].as_str();
    let rows: u64 = args[2].parse().unwrap();
    let pool_mb: usize = args[3].parse().unwrap();
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let mut opts = EngineOptions::default();
    opts.cache_pages = pool_mb * 128;
    if std::env::var("NOFLUSH").is_ok() {
        opts.flush_interval = None;
    }
    let (engine, _) = Engine::open(dir.path(), opts).unwrap();
    engine.create_database("DB").unwrap();
    let mut s = engine.session();
    let value = Value::Bytes((0..100).map(|i| (i * 7 + 3) as u8).collect());
    let mut rng = 0x5eedu64;
    let t = Instant::now();
    let mut keys = Vec::with_capacity(rows as usize);
    let mut i = 0;
    let mut commit_time = 0.0;
    let mut cts: Vec<u64> = Vec::new();
    while i < rows {
        s.tstart().unwrap();
        for j in i..(i + 1000).min(rows) {
            let raw = match mode {
                "seq" => seq_key(j),
                _ => hexkey(rnd(&mut rng)),
            };
            let k = key(&raw);
            s.set("DB", &k, &value).unwrap();
            if mode == "get" {
                keys.push(k);
            }
        }
        let tc = Instant::now();
        s.tcommit().unwrap();
        commit_time += tc.elapsed().as_secs_f64();
        cts.push(tc.elapsed().as_micros() as u64);
        i += 1000;
    }
    let e = t.elapsed().as_secs_f64();
    eprintln!(
        "{mode}: {rows} rows in {e:.2}s = {:.0}/s (commits {commit_time:.2}s)",
        rows as f64 / e
    );
    cts.sort();
    let n = cts.len();
    eprintln!(
        "commit us: p10 {} p50 {} p90 {} p99 {} max {}",
        cts[n / 10],
        cts[n / 2],
        cts[n * 9 / 10],
        cts[n * 99 / 100],
        cts[n - 1]
    );
    if mode == "get" {
        let secs: f64 = args.get(4).map_or(5.0, |s| s.parse().unwrap());
        let mut n = 0u64;
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < secs {
            for _ in 0..1000 {
                let k = &keys[(rnd(&mut rng) % keys.len() as u64) as usize];
                if s.get("DB", k).unwrap().is_some() {
                    n += 1;
                }
            }
        }
        let e = t.elapsed().as_secs_f64();
        eprintln!("get: {:.0}/s", n as f64 / e);
    }
    drop(s);
    engine.close().unwrap();
}
