//! Benchmark peer B: the off-the-shelf way to do Redis-backed sessions in
//! actix-web (actix-session + RedisSessionStore).
//!
//! `POST /login` stores `user_id` in the session (sets the session cookie),
//! `GET /` reads `user_id` from the session and returns it, or 401 if absent.
//!
//! Usage: peer-actix-session [--port N] [--redis-url URL] [--workers N]
//! Env fallbacks: BENCH_PORT (8082), BENCH_REDIS_URL (redis://127.0.0.1:6379),
//! BENCH_WORKERS (1). Listens on 127.0.0.1 only.

use actix_session::{storage::RedisSessionStore, Session, SessionMiddleware};
use actix_web::{cookie::Key, get, post, App, HttpResponse, HttpServer};

struct Args {
    port: u16,
    redis_url: String,
    workers: usize,
}

fn parse_args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut port = env("BENCH_PORT").unwrap_or_else(|| "8082".into());
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
                eprintln!("usage: peer-actix-session [--port N] [--redis-url URL] [--workers N]");
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

#[post("/login")]
async fn login(session: Session) -> HttpResponse {
    match session.insert("user_id", "bench-user") {
        Ok(()) => HttpResponse::Ok().body("logged in"),
        Err(e) => HttpResponse::InternalServerError().body(format!("session error: {e}")),
    }
}

#[get("/")]
async fn index(session: Session) -> HttpResponse {
    match session.get::<String>("user_id") {
        Ok(Some(user)) => HttpResponse::Ok().content_type("text/plain").body(user),
        Ok(None) => HttpResponse::Unauthorized().body("no session"),
        Err(e) => HttpResponse::InternalServerError().body(format!("session error: {e}")),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args();
    let store = RedisSessionStore::new(args.redis_url.as_str())
        .await
        .expect("cannot connect to redis");
    // Fresh random signing key per process: cookies are obtained after start.
    let key = Key::generate();
    eprintln!(
        "peer-actix-session listening on 127.0.0.1:{} (workers={}, redis={})",
        args.port, args.workers, args.redis_url
    );
    HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .build(),
            )
            .service(login)
            .service(index)
    })
    .workers(args.workers.max(1))
    .bind(("127.0.0.1", args.port))?
    .run()
    .await
}
