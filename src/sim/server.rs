//! Serving simulated controllers over Modbus TCP and RTU with tokio-modbus's server.
//!
//! Owns the request → register mapping and the wire behaviours (silent, late, exception). Must
//! never hold a register lock across an await.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_modbus::prelude::*;
use tokio_modbus::server::Service;

use super::{Behaviour, Controller};

/// A bus of simulated units, keyed by unit id. A unit not in the map never answers.
#[derive(Clone, Default)]
pub struct SimBus {
    units: Arc<BTreeMap<u8, Arc<Controller>>>,
}

impl SimBus {
    pub fn new(units: impl IntoIterator<Item = (u8, Arc<Controller>)>) -> Self {
        SimBus {
            units: Arc::new(units.into_iter().collect()),
        }
    }

    fn answer(c: &Controller, req: &Request<'_>) -> Result<Response, ExceptionCode> {
        let mut r = c.registers();
        if let Some(n) = r.holding.get_mut(&super::REQUEST_COUNTER) {
            *n = n.wrapping_add(1);
        }
        let words = |m: &BTreeMap<u16, u16>, a: u16, n: u16| -> Result<Vec<u16>, ExceptionCode> {
            (0..n)
                .map(|i| {
                    a.checked_add(i)
                        .and_then(|k| m.get(&k).copied())
                        .ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect()
        };
        let bits = |m: &BTreeMap<u16, bool>, a: u16, n: u16| -> Result<Vec<bool>, ExceptionCode> {
            (0..n)
                .map(|i| {
                    a.checked_add(i)
                        .and_then(|k| m.get(&k).copied())
                        .ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect()
        };
        match *req {
            Request::ReadInputRegisters(a, n) => {
                words(&r.input, a, n).map(Response::ReadInputRegisters)
            }
            Request::ReadHoldingRegisters(a, n) => {
                words(&r.holding, a, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadCoils(a, n) => bits(&r.coils, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => {
                bits(&r.discrete, a, n).map(Response::ReadDiscreteInputs)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl Service for SimBus {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        let Some(c) = self.units.get(&req.slave).cloned() else {
            return Box::pin(async { Ok(None) });
        };
        Box::pin(async move {
            match c.behaviour() {
                Behaviour::Silent => Ok(None),
                Behaviour::Exception(code) => Err(ExceptionCode::new(code)),
                Behaviour::Late(d) => {
                    tokio::time::sleep(d).await;
                    SimBus::answer(&c, &req.request).map(Some)
                }
                Behaviour::Normal => SimBus::answer(&c, &req.request).map(Some),
            }
        })
    }
}

/// Serves `bus` over Modbus TCP on `listener` until the returned future is dropped.
pub async fn serve_tcp(listener: TcpListener, bus: SimBus) -> io::Result<()> {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, _addr: SocketAddr| {
        let bus = bus.clone();
        async move { Ok(Some((bus, stream))) }
    };
    server
        .serve(
            &on_connected,
            |e| tracing::debug!(error = %e, "simulator connection ended"),
        )
        .await
}

/// Serves `bus` over Modbus RTU on the serial device at `path` until the line fails.
pub async fn serve_rtu(path: &str, baud: u32, bus: SimBus) -> io::Result<()> {
    use tokio_serial::SerialPortBuilderExt;
    let port = tokio_serial::new(path, baud)
        .open_native_async()
        .map_err(io::Error::from)?;
    tokio_modbus::server::rtu::Server::new(port)
        .serve_forever(bus)
        .await
}
