//! Calls from the worker (or one object) to a Durable Object: a JSON POST to a named object,
//! with anything but a 200 turned into an error that carries the object's answer.

use worker::{Env, Method, Request, RequestInit, Response, Result, Stub};

/// POSTs `body` to `path` on the object `name` of `binding`.
pub(crate) async fn post(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    body: String,
) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request = Request::new_with_init(&format!("https://object{path}"), &init)?;
    let mut response = stub(env, binding, name)?
        .fetch_with_request(request)
        .await?;
    if response.status_code() != 200 {
        return Err(format!(
            "{binding} object answered {}: {}",
            response.status_code(),
            response.text().await.unwrap_or_default()
        )
        .into());
    }
    Ok(response)
}

/// The stub of the object `name` of `binding`.
pub(crate) fn stub(env: &Env, binding: &str, name: &str) -> Result<Stub> {
    env.durable_object(binding)?.id_from_name(name)?.get_stub()
}
