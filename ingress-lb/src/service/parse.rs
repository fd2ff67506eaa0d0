//! The text forms of the CLI flags: `--port PORT[:TARGET][/tcp|/udp]`, `--publish
//! PUB:PORT[/tcp|/udp]`, `--backend ENDPOINT[:WEIGHT]`, `--vip IP|auto`, `--health none|tcp|http:PATH`, `--affinity
//! none|client-ip`, `--mode default|dsr`, durations like `1s` or `250ms`. Errors name the flag.

use std::str::FromStr;

use overlay_core::validate::ValidationError;

use super::{
    validate, Affinity, BackendSpec, HealthCheck, Mode, PortSpec, Proto, PublishedPort, VipRequest,
};

/// Splits `TEXT[/PROTO]`; tcp when no protocol is given.
fn split_proto(field: &'static str, s: &str) -> Result<(String, Proto), ValidationError> {
    match s.rsplit_once('/') {
        None => Ok((s.to_string(), Proto::Tcp)),
        Some((rest, proto)) => Ok((
            rest.to_string(),
            proto.parse().map_err(|_| {
                ValidationError::new(field, s, format!("unknown protocol '{proto}' (tcp or udp)"))
            })?,
        )),
    }
}

fn port_number(field: &'static str, whole: &str, text: &str) -> Result<u16, ValidationError> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ValidationError::new(
            field,
            whole,
            format!("'{text}' is not a port number 1-65535"),
        )),
    }
}

impl FromStr for Proto {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(ValidationError::new("proto", s, "must be tcp or udp")),
        }
    }
}

impl FromStr for PortSpec {
    type Err = ValidationError;
    /// `80`, `80:8080`, `53/udp`, `80:8080/tcp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ports, proto) = split_proto("port", s)?;
        let (port, target) = match ports.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (ports.as_str(), None),
        };
        Ok(PortSpec {
            port: port_number("port", s, port)?,
            target_port: target
                .map(|t| port_number("target-port", s, t))
                .transpose()?,
            proto,
        })
    }
}

impl FromStr for PublishedPort {
    type Err = ValidationError;
    /// `8080:80`, `5353:53/udp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ports, proto) = split_proto("publish", s)?;
        let Some((published, port)) = ports.split_once(':') else {
            return Err(ValidationError::new(
                "publish",
                s,
                "must be PUBLISHED:PORT[/tcp|/udp], e.g. 8080:80",
            ));
        };
        Ok(PublishedPort {
            published: port_number("publish", s, published)?,
            port: port_number("publish", s, port)?,
            proto,
        })
    }
}

impl FromStr for BackendSpec {
    type Err = ValidationError;
    /// `web1` (weight 1) or `web1:3`: an endpoint id and an optional weight
    /// (1..=[`validate::WEIGHT_MAX`]). Endpoint ids cannot contain ':'.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (endpoint, weight) = match s.split_once(':') {
            None => (s, None),
            Some((e, w)) => {
                let w: u32 = w.parse().map_err(|_| {
                    ValidationError::new(
                        "weight",
                        s,
                        format!("'{w}' is not a weight 1-{}", validate::WEIGHT_MAX),
                    )
                })?;
                validate::weight(w)?;
                (e, Some(w))
            }
        };
        validate::backend_name(endpoint)?;
        Ok(BackendSpec {
            endpoint: endpoint.to_string(),
            weight,
        })
    }
}

impl FromStr for VipRequest {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(VipRequest::Auto);
        }
        s.parse()
            .map(VipRequest::Ip)
            .map_err(|_| ValidationError::new("vip", s, "must be an IPv4 address or 'auto'"))
    }
}

impl FromStr for HealthCheck {
    type Err = ValidationError;
    /// `none`, `tcp`, `http:/healthz`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(HealthCheck::None),
            "tcp" => Ok(HealthCheck::Tcp),
            _ => match s.strip_prefix("http:") {
                Some(path) => Ok(HealthCheck::Http {
                    path: path.to_string(),
                }),
                None => Err(ValidationError::new(
                    "health",
                    s,
                    "must be none, tcp or http:PATH (e.g. http:/healthz)",
                )),
            },
        }
    }
}

impl FromStr for Affinity {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Affinity::None),
            "client-ip" => Ok(Affinity::ClientIp),
            _ => Err(ValidationError::new(
                "affinity",
                s,
                "must be none or client-ip",
            )),
        }
    }
}

impl FromStr for Mode {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Mode::Default),
            "dsr" => Ok(Mode::Dsr),
            _ => Err(ValidationError::new("mode", s, "must be default or dsr")),
        }
    }
}

/// A duration in ms from `250ms`, `1s`, `1.5s` or `2m`; `field` names the flag in errors.
pub fn parse_duration_ms(field: &'static str, s: &str) -> Result<u32, ValidationError> {
    let bad = || ValidationError::new(field, s, "must be a duration like 500ms, 1s or 1.5s");
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return Err(bad());
    };
    let v: f64 = number.parse().map_err(|_| bad())?;
    let ms = v * scale;
    if !ms.is_finite() || ms < 0.0 || ms > f64::from(u32::MAX) || ms.fract() != 0.0 {
        return Err(bad());
    }
    Ok(ms as u32)
}

/// `default` or `dsr`: the words [`Mode::from_str`] takes.
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Default => "default",
            Mode::Dsr => "dsr",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p: PortSpec = "80".parse().unwrap();
        assert_eq!((p.port, p.target_port, p.proto), (80, None, Proto::Tcp));
        let p: PortSpec = "53:5353/udp".parse().unwrap();
        assert_eq!(
            (p.port, p.target_port, p.proto),
            (53, Some(5353), Proto::Udp)
        );
        for (bad, field) in [
            ("0", "port"),
            ("70000", "port"),
            ("x", "port"),
            ("80:0", "target-port"),
            ("80:", "target-port"),
            ("80/sctp", "port"),
        ] {
            assert_eq!(bad.parse::<PortSpec>().unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn backends() {
        let b: BackendSpec = "web1".parse().unwrap();
        assert_eq!((b.endpoint.as_str(), b.weight), ("web1", None));
        let b: BackendSpec = "web1:3".parse().unwrap();
        assert_eq!((b.endpoint.as_str(), b.weight), ("web1", Some(3)));
        for (bad, field) in [
            ("web1:0", "weight"),
            ("web1:1001", "weight"),
            ("web1:x", "weight"),
            ("web1:", "weight"),
            ("", "backend"),
            (":3", "backend"),
            ("a b", "backend"),
        ] {
            assert_eq!(
                bad.parse::<BackendSpec>().unwrap_err().field,
                field,
                "{bad}"
            );
        }
    }

    #[test]
    fn published_ports() {
        let p: PublishedPort = "8080:80".parse().unwrap();
        assert_eq!((p.published, p.port, p.proto), (8080, 80, Proto::Tcp));
        for bad in ["8080", "0:80", "8080:80/icmp", "a:b"] {
            assert_eq!(bad.parse::<PublishedPort>().unwrap_err().field, "publish");
        }
    }

    #[test]
    fn words() {
        assert_eq!("auto".parse::<VipRequest>().unwrap(), VipRequest::Auto);
        assert_eq!(
            "10.0.0.9".parse::<VipRequest>().unwrap(),
            VipRequest::Ip("10.0.0.9".parse().unwrap())
        );
        assert_eq!("10.0.0".parse::<VipRequest>().unwrap_err().field, "vip");
        assert_eq!(
            "http:/h".parse::<HealthCheck>().unwrap(),
            HealthCheck::Http { path: "/h".into() }
        );
        assert_eq!("udp".parse::<HealthCheck>().unwrap_err().field, "health");
        assert_eq!("client-ip".parse::<Affinity>().unwrap(), Affinity::ClientIp);
        assert_eq!("dsr".parse::<Mode>().unwrap(), Mode::Dsr);
        assert_eq!(parse_duration_ms("i", "1s").unwrap(), 1000);
        assert_eq!(parse_duration_ms("i", "1.5s").unwrap(), 1500);
        assert_eq!(parse_duration_ms("i", "250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("i", "2m").unwrap(), 120_000);
        for bad in ["1", "-1s", "1.0005s", "s", "1h"] {
            assert_eq!(parse_duration_ms("i", bad).unwrap_err().field, "i", "{bad}");
        }
    }
}
