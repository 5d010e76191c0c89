//! Benchmark baseline A: the cheapest possible "look something up in Redis"
//! HTTP endpoint. `GET /` performs exactly one `GET bench:key` over a single
//! shared `redis::aio::ConnectionManager` and returns the value as text.
//!
//! Usage: baseline-redis-get [--port N] [--redis-url URL] [--workers N]
//! Env fallbacks: BENCH_PORT (8081), BENCH_REDIS_URL (redis://127.0.0.1:6379),
//! BENCH_WORKERS (1). Listens on 127.0.0.1 only.

use actix_web::{get, web, App, HttpResponse, HttpServer};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

struct Args {
    port: u16,
    redis_url: String,
    workers: usize,
}

fn parse_args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut port = env("BENCH_PORT").unwrap_or_else(|| "8081".into());
    let mut redis_url = env("BENCH_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut workers = env("BENCH_WORKERS").unwrap_or_else(|| "1".into());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--port" | "-p" => port = val("--port"),
            "--redis-url" | "-r" => redis_url = val("--redis-url"),
            "--workers" | "-w" => workers = val("--workers"),
            "-h" | "--help" => {
                eprintln!("usage: baseline-redis-get [--port N] [--redis-url URL] [--workers N]");
                std::process::exit(0);
            }
            other => panic!("unknown argument: {other}"),
        }
    }
    Args {
        port: port.parse().expect("port must be a number"),
        redis_url,
        workers: workers.parse().expect("workers must be a number"),
    }
}

/// The bare actix-web hello handler (no Redis): the JWT-path baseline of bench-revocation.
#[get("/hello")]
async fn hello() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("hello")
}

#[get("/")]
async fn index(redis: web::Data<ConnectionManager>) -> HttpResponse {
    let mut conn = redis.get_ref().clone();
    match conn.get::<_, Option<String>>("bench:key").await {
        Ok(Some(v)) => HttpResponse::Ok().content_type("text/plain").body(v),
        Ok(None) => HttpResponse::NotFound().body("bench:key not set"),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("redis error: {e}")),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args();
    let client = redis::Client::open(args.redis_url.as_str()).expect("invalid redis url");
    let manager = ConnectionManager::new(client)
        .await
        .expect("cannot connect to redis");
    let data = web::Data::new(manager);
    eprintln!(
        "baseline-redis-get listening on 127.0.0.1:{} (workers={}, redis={})",
        args.port, args.workers, args.redis_url
    );
    HttpServer::new(move || App::new().app_data(data.clone()).service(index).service(hello))
        .workers(args.workers.max(1))
        .bind(("127.0.0.1", args.port))?
        .run()
        .await
}
