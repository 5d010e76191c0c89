//! While a node drains (SIGTERM), every response says `Connection: close`: a keep-alive client
//! opens its next request elsewhere instead of sending it down a connection the node is about
//! to close (the attack on issue 13 saw eight keep-alive clients lose a request each at the
//! moment the listeners closed).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web;
use std::sync::atomic::Ordering;

pub async fn close_when_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = req
        .app_data::<web::Data<super::State>>()
        .is_some_and(|state| state.draining.load(Ordering::Relaxed));
    let mut response = next.call(req).await?;
    if draining {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}
