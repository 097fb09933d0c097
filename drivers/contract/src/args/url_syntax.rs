//! `scheme://user:password@host:port/dbname?key=value` connection URLs, parsed by the `url`
//! crate (RFC 3986 / WHATWG), then mapped to the same keys as the `key=value` spelling:
//! `user`, `password`, `host`, `port`, `dbname`, and one key per query parameter.
//!
//! What the `url` crate leaves to us: a database scheme (`postgres`, `mysql`, `redis`) is not a
//! "special" scheme to it, so user, password, host and path come back percent-encoded, and the
//! query is decoded here too. The query is percent-decoded only (`+` stays a plus, as libpq
//! reads it), not form-decoded: a password `a+b` in `?password=a+b` must not become `a b`.
//! A host in brackets is an IPv6 address; a percent-encoded host such as `%2Frun%2Fpg` is a
//! socket directory, as in libpq.
//!
//! A host list (`postgres://app@h1:5432,h2:5433/shop`, as libpq and most multi-host clients
//! write it) gives `host=h1,h2 port=5432,5433`: the `url` crate takes one host only, so the
//! authority's hosts are split at commas here and each is read on its own. A host written
//! without a port gets an empty entry in the port list (`port=,5433`), which a driver reads
//! as its default port, as libpq does; when no host has a port, there is no `port` key.
//!
//! Errors say which part is wrong, never what it held. Each query parameter remembers its
//! position, and whether it may be a piece of a password (see [`Origin::after_secret`]): one
//! written after a secret parameter (`?password=a&b=c`: an unencoded `&` in the password), or
//! every part when the user info seems to have spilled over (`postgres://app:12/x?horse=b@db`:
//! an unencoded `/` and `?` in the password make `app` and `12` the host and port, and the
//! rest of the password the path and query).

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use super::{invalid, is_secret_key, ConnArgs, Origin, Place};
use crate::DriverError;

/// Parses a whole connection URL (the caller has seen `scheme://`).
pub(super) fn parse(text: &str) -> Result<ConnArgs, DriverError> {
    let Authority {
        text,
        more_hosts,
        no_host,
    } = split_host_list(text)?;
    let url = parse_url(&text)?;
    let mut args = ConnArgs::default();
    let spilled = has_spilled_user_info(&text);
    let part = Origin {
        place: Place::UrlPart,
        after_secret: spilled,
    };
    if !url.username().is_empty() {
        args.set_parsed("user", decode(url.username(), "user name")?, part);
    }
    match url.password() {
        Some(password) => args.set_parsed("password", decode(password, "password")?, part),
        // `user:@host`: the `url` crate drops an empty password; libpq keeps it (as `''`).
        None if has_empty_password(&text) => args.set_parsed("password", "", part),
        None => {}
    }
    let mut hosts = match no_host {
        true => vec![(None, url.port())],
        false => vec![host_and_port(&url)?],
    };
    for (index, authority) in more_hosts.iter().enumerate() {
        let one = parse_url(&format!("{}://{authority}", url.scheme())).map_err(|_| {
            invalid(format!(
                "host {} of the connection URL's host list is malformed; expected \
                 scheme://user:password@host1:port1,host2:port2/dbname",
                index + 2
            ))
        })?;
        hosts.push(host_and_port(&one)?);
    }
    if let Some(empty) = hosts.iter().position(|(host, _)| host.is_none()) {
        if hosts.len() > 1 {
            return Err(empty_host(empty));
        }
    }
    if hosts.iter().any(|(host, _)| host.is_some()) {
        let names: Vec<&str> = hosts
            .iter()
            .map(|(h, _)| h.as_deref().unwrap_or(""))
            .collect();
        args.set_parsed("host", names.join(","), part);
    }
    if hosts.iter().any(|(_, port)| port.is_some()) {
        let ports: Vec<String> = hosts
            .iter()
            .map(|(_, p)| p.map(|p| p.to_string()).unwrap_or_default())
            .collect();
        args.set_parsed("port", ports.join(","), part);
    }
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    if !path.is_empty() {
        args.set_parsed("dbname", decode(path, "database name")?, part);
    }
    let mut after_secret = spilled;
    let pairs = url.query().into_iter().flat_map(|q| q.split('&'));
    for (index, pair) in pairs.filter(|pair| !pair.is_empty()).enumerate() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key, "query parameter name")?;
        if key.is_empty() {
            return Err(invalid(format!(
                "query parameter {} of the connection URL has no name; expected \
                 ?key=value&key2=value2",
                index + 1
            )));
        }
        let origin = Origin {
            place: Place::QueryParameter(index + 1),
            after_secret,
        };
        args.set_parsed(&key, decode(value, "query parameter value")?, origin);
        after_secret |= is_secret_key(&key);
    }
    Ok(args)
}

/// `Url::parse`, with an error that names the rule broken, never the input.
fn parse_url(text: &str) -> Result<Url, DriverError> {
    Url::parse(text).map_err(|error| {
        // `url`'s messages name the rule broken ("invalid port number"), never the input.
        invalid(format!(
            "the connection URL is malformed ({error}); expected \
             scheme://user:password@host:port/dbname?key=value, with reserved characters in \
             the user name or password percent-encoded"
        ))
    })
}

/// The host (decoded: a name, an IP address, or a socket directory) and port of `url`.
fn host_and_port(url: &Url) -> Result<(Option<String>, Option<u16>), DriverError> {
    let host = match url.host() {
        Some(Host::Ipv6(address)) => Some(address.to_string()),
        Some(Host::Ipv4(address)) => Some(address.to_string()),
        Some(Host::Domain(host)) if !host.is_empty() => Some(decode(host, "host")?),
        _ => None,
    };
    Ok((host, url.port()))
}

/// The URL as the `url` crate can read it, and what it cannot.
struct Authority<'t> {
    /// The URL with its first host only (or a stand-in host, see `no_host`).
    text: std::borrow::Cow<'t, str>,
    /// The other hosts' `host:port` texts.
    more_hosts: Vec<String>,
    /// The URL names no host after its user info (`postgres://app@/shop?host=/run/pg`, libpq's
    /// form for a socket directory given in the query): `text` carries a stand-in host, which
    /// is not a host of the arguments.
    no_host: bool,
}

/// Splits a host list off the URL's authority. A URL with one host comes back as it was. The
/// authority ends at the first `/`, `?` or `#`, and its hosts start after its last `@` (the
/// user info may hold commas); a comma inside `[...]` is not a separator (an IPv6 address has
/// none, but the `url` crate will say so, not this). Not when the user info seems to have
/// spilled over (an unencoded `/`, `?` or `#` in the password): the password's pieces would
/// become host names, shown in errors and looked up in DNS; the `url` crate refuses such a URL
/// as it did before host lists were read.
fn split_host_list(text: &str) -> Result<Authority<'_>, DriverError> {
    let unsplit = |text: &str| Authority {
        text: text.to_owned().into(),
        more_hosts: Vec::new(),
        no_host: false,
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(unsplit(text));
    };
    if has_spilled_user_info(text) {
        return Ok(unsplit(text));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user_info, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    if hosts.is_empty() && !user_info.is_empty() {
        return Ok(Authority {
            text: format!("{scheme}://{user_info}localhost{tail}").into(),
            more_hosts: Vec::new(),
            no_host: true,
        });
    }
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in hosts.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                entries.push(&hosts[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if entries.is_empty() {
        return Ok(unsplit(text));
    }
    entries.push(&hosts[start..]);
    if let Some(empty) = entries.iter().position(|e| e.is_empty()) {
        return Err(empty_host(empty));
    }
    Ok(Authority {
        text: format!("{scheme}://{user_info}{}{tail}", entries[0]).into(),
        more_hosts: entries[1..].iter().map(|e| e.to_string()).collect(),
        no_host: false,
    })
}

/// The error for the empty host at `index` of a URL's host list.
fn empty_host(index: usize) -> DriverError {
    invalid(format!(
        "host {} of the connection URL's host list is empty; expected \
         scheme://user:password@host1:port1,host2:port2/dbname",
        index + 1
    ))
}

/// Whether an `@` comes after the authority (`scheme://user:password@host:port`): the user info
/// then ended early, at a `/`, `?` or `#` in an unencoded password (`app:12/x?a=b@db`): the
/// user name and the start of the password became the host and port, and the rest of the
/// password the path and query. An `@` in a query value is
/// legal too, so this only makes every part count as a possible piece of a password: unknown
/// names are pointed at by position and values are not shown. A false alarm costs a less
/// helpful message, never a leak.
fn has_spilled_user_info(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    after_scheme
        .find(['/', '?', '#'])
        .is_some_and(|end| after_scheme[end..].contains('@'))
}

/// Whether the URL's user info ends in `:` (an empty password), which `Url` cannot tell.
fn has_empty_password(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.ends_with(':'))
}

/// Percent-decodes one part of the URL; `what` names the part in the error.
/// A `%` not followed by two hex digits is an error, as in libpq (the `percent-encoding`
/// crate would keep it literally, silently changing a password).
fn decode(text: &str, what: &str) -> Result<String, DriverError> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(invalid(format!(
            "the {what} in the connection URL has a `%` not followed by two hex digits; \
             write a literal `%` as %25"
        )));
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            invalid(format!(
                "the {what} in the connection URL is not UTF-8 once decoded"
            ))
        })
}
