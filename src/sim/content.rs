//! What a simulated server holds, as its Migrator exports it: three users, two libraries,
//! a few watched items per user and five devices, with ids derived from the server's name,
//! so every export of one server carries the same ids, as a real server's would.

use super::seed::{FNV_OFFSET, fnv1a, hex_id};
use serde_json::json;

/// The users every simulated server has, the first an administrator.
pub const USERS: [&str; 3] = ["alice", "bob", "kids"];

/// The simulated server's users, libraries, items and devices, fixed by its name.
pub struct Content {
    seed: u64,
}

impl Content {
    pub fn new(server: &str) -> Self {
        Content {
            seed: fnv1a(FNV_OFFSET, server.as_bytes()),
        }
    }

    /// A 32-hex-digit id for `what`.
    fn id(&self, what: &str) -> String {
        hex_id(&mut fnv1a(self.seed, what.as_bytes()))
    }

    /// `libraries.json`.
    pub fn libraries(&self) -> String {
        pretty(&json!([
            {"Id": self.id("Movies"), "Name": "Movies", "CollectionType": "movies", "Locations": ["/media/movies"]},
            {"Id": self.id("Shows"), "Name": "Shows", "CollectionType": "tvshows", "Locations": ["/media/shows"]},
        ]))
    }

    /// `users_basic.json`, with password hashes when `hashes`.
    pub fn users(&self, hashes: bool) -> String {
        let users: Vec<_> = USERS
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut user = json!({
                    "id": self.id(u),
                    "username": u,
                    "isAdministrator": i == 0,
                    "isDisabled": false,
                    "isHidden": false,
                    "libraries": [{"id": self.id("Movies"), "name": "Movies"}, {"id": self.id("Shows"), "name": "Shows"}],
                });
                if hashes {
                    user["passwordHash"] = json!(format!(
                        "$PBKDF2-SHA512$iterations=210000${}${}{}",
                        self.id(&format!("salt {u}")).to_uppercase(),
                        self.id(&format!("hash {u}")).to_uppercase(),
                        self.id(&format!("hash2 {u}")).to_uppercase()
                    ));
                }
                user
            })
            .collect();
        pretty(&json!(users))
    }

    /// The watch-history items of user `i`, each as compact JSON.
    pub fn watch_items(&self, i: usize) -> Vec<String> {
        let titles = [
            ("Blade Runner", "Movie", 1982),
            ("Arrival", "Movie", 2016),
            ("Paddington 2", "Movie", 2017),
        ];
        titles
            .iter()
            .take(3 - i.min(1))
            .map(|(name, kind, year)| {
                json!({
                    "ids": {"id": self.id(name), "type": kind, "name": name, "path": format!("/media/movies/{name} ({year}).mkv"), "productionYear": year},
                    "played": true, "playCount": 1 + i, "isFavorite": i == 0, "playbackPositionTicks": 0,
                    "lastPlayedUtc": "2025-09-28T19:02:11.5Z",
                })
                .to_string()
            })
            .collect()
    }

    /// `devices.json`, device access tokens included.
    pub fn devices(&self) -> String {
        let devices: Vec<_> = ["Android TV", "Jellyfin Web", "Infuse", "Kodi", "Swiftfin"]
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let user = USERS[i % USERS.len()];
                json!({
                    "Id": self.id(&format!("device {app}")),
                    "LastUserId": self.id(user),
                    "LastUserName": user,
                    "AppName": app,
                    "AccessToken": self.id(&format!("token {app}")),
                })
            })
            .collect();
        pretty(&json!({"TokensIncluded": true, "Devices": devices}))
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
