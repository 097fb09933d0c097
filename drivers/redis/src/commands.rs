//! Which commands cannot change a connection's state, as the server itself classifies them.
//!
//! A session on which only such commands ran (`GET`, `SET`, `HGET`, `INCR`, `EXPIRE`, …) is
//! exactly as it was opened: it needs no `RESET`, so its release costs no round trip and no
//! server work. The classes come from the server (`COMMAND`, once per server), not from a list
//! in this driver, so a command the driver never heard of is classified by what the server says
//! about it, and a command the server does not list (renamed, a module's, an unknown one)
//! counts as changing state.
//!
//! **The rule.** A command is data-only when its own ACL categories (Redis ≥ 6.0) contain
//! `@read` or `@write` — it works on the keyspace — and none of `@connection` (`SELECT`,
//! `CLIENT`, `HELLO`, `AUTH`, `READONLY`, `RESET`, `WAIT`…), `@pubsub`, `@transaction`
//! (`MULTI`, `WATCH`), `@scripting` (scripts and functions may run anything), `@admin` or
//! `@dangerous` (`MONITOR`, `SWAPDB`, `SORT` with patterns…), and when it has no subcommands
//! (a container such as `OBJECT` or `CLIENT` is judged by its subcommand, which this driver
//! does not split out: it counts as changing). The categories of Redis 7.0 on this machine,
//! for the commands the issue names: `SELECT` `@fast @connection`; `READONLY` `@fast
//! @connection`; `WATCH`/`MULTI` `@transaction`; `EVAL`/`FCALL` `@scripting`; `SWAPDB`
//! `@keyspace @write @fast @dangerous`; `GET` `@read @string @fast`; `SET` `@write @string
//! @slow`; `BLPOP` `@write @list @slow @blocking` (a blocked call that ends leaves no state;
//! one that does not end is cut by the statement deadline, which closes the connection).
//!
//! A server that cannot answer `COMMAND` (too old, or the user may not run it) gets no
//! classes: every used session is reset, as before.

use std::collections::HashSet;
use std::sync::Arc;

use redis::Value as Reply;

/// The categories that mark a command as one that may change the connection, not only data.
const CHANGES_THE_CONNECTION: [&str; 6] = [
    "@connection",
    "@pubsub",
    "@transaction",
    "@scripting",
    "@admin",
    "@dangerous",
];

/// The names (lower case) of the commands that cannot change connection state on one server.
#[derive(Debug, Default)]
pub(crate) struct DataOnly {
    names: HashSet<Box<str>>,
}

impl DataOnly {
    /// Whether `name` (any case) is data-only on this server.
    pub(crate) fn contains(&self, name: &str) -> bool {
        // Command names are short ASCII: lower-case on the stack, no allocation.
        let mut buffer = [0u8; 32];
        let Some(slot) = buffer.get_mut(..name.len()) else {
            return false;
        };
        slot.copy_from_slice(name.as_bytes());
        slot.make_ascii_lowercase();
        std::str::from_utf8(slot).is_ok_and(|lower| self.names.contains(lower))
    }

    /// How many commands are data-only.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The classes from `COMMAND`'s reply: `None` if the reply is not one (a server error, an
    /// old server without ACL categories).
    pub(crate) fn from_reply(reply: &Reply) -> Option<Arc<DataOnly>> {
        let Reply::Array(entries) = reply else {
            return None;
        };
        let mut names = HashSet::new();
        let mut categorised = false;
        for entry in entries {
            let Reply::Array(fields) = entry else {
                continue;
            };
            let (Some(name), Some(categories)) = (fields.first().and_then(text), fields.get(6))
            else {
                continue;
            };
            categorised = true;
            let categories: Vec<String> = items(categories).filter_map(text).collect();
            let has_subcommands = fields.get(9).is_some_and(|s| items(s).next().is_some());
            let on_data = categories.iter().any(|c| c == "@read" || c == "@write");
            let changes = categories
                .iter()
                .any(|c| CHANGES_THE_CONNECTION.contains(&c.as_str()));
            if on_data && !changes && !has_subcommands && name.len() <= 32 {
                names.insert(name.to_ascii_lowercase().into_boxed_str());
            }
        }
        categorised.then(|| Arc::new(DataOnly { names }))
    }
}

/// The elements of an array or set reply (none for anything else).
fn items(reply: &Reply) -> impl Iterator<Item = &Reply> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items.iter(),
        _ => [].iter(),
    }
}

/// A bulk or status string's text.
fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Reply::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: &str) -> Reply {
        Reply::SimpleString(s.to_owned())
    }

    fn entry(name: &str, categories: &[&str], subcommands: usize) -> Reply {
        Reply::Array(vec![
            Reply::BulkString(name.as_bytes().to_vec()),
            Reply::Int(2),
            Reply::Array(vec![status("fast")]),
            Reply::Int(1),
            Reply::Int(1),
            Reply::Int(1),
            Reply::Array(categories.iter().map(|c| status(c)).collect()),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
            Reply::Array((0..subcommands).map(|_| Reply::Nil).collect()),
        ])
    }

    #[test]
    fn only_keyspace_commands_that_cannot_touch_the_connection_are_data_only() {
        let reply = Reply::Array(vec![
            entry("get", &["@read", "@string", "@fast"], 0),
            entry("set", &["@write", "@string", "@slow"], 0),
            entry("select", &["@fast", "@connection"], 0),
            entry("watch", &["@fast", "@transaction"], 0),
            entry("eval", &["@slow", "@scripting"], 0),
            entry("swapdb", &["@keyspace", "@write", "@fast", "@dangerous"], 0),
            entry("object", &["@slow"], 5),
            entry("memory", &["@read", "@slow"], 3),
            entry("time", &["@fast"], 0),
            entry("publish", &["@pubsub", "@fast"], 0),
        ]);
        let classes = DataOnly::from_reply(&reply).expect("classes");
        assert!(classes.contains("GET") && classes.contains("get") && classes.contains("Set"));
        for name in [
            "select", "watch", "eval", "swapdb", "object", "memory", "time", "publish", "hget",
        ] {
            assert!(!classes.contains(name), "{name}");
        }
        assert!(!classes.contains(&"g".repeat(40)));
        assert_eq!(classes.len(), 2);
    }

    #[test]
    fn a_reply_without_categories_gives_no_classes() {
        assert!(DataOnly::from_reply(&Reply::Okay).is_none());
        let old = Reply::Array(vec![Reply::Array(vec![
            Reply::BulkString(b"get".to_vec()),
            Reply::Int(2),
        ])]);
        assert!(DataOnly::from_reply(&old).is_none());
    }
}
