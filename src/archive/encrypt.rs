//! age encryption of the archive: the recipients the config names (public keys, parsed
//! when the config loads) and, for `archive verify --identity`, the identities that
//! decrypt (secret keys: read from their file, never shown, not even in part).
//!
//! Recipients are what the `age` tool writes and reads: X25519 keys (`age1…`), and SSH
//! `ssh-ed25519` and `ssh-rsa` public keys (as in `authorized_keys`, comment allowed).
//! Other kinds (post-quantum `age1pq…`, plugins) are refused by name: Debian's `age`
//! cannot decrypt them, and a backup must be readable by the tools at hand.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// One recipient: the key as written, and parsed.
#[derive(Clone)]
pub struct Recipient {
    text: String,
    key: Key,
}

#[derive(Clone)]
enum Key {
    X25519(age::x25519::Recipient),
    Ssh(Box<age::ssh::Recipient>),
}

impl Recipient {
    /// Parse one recipient; the error is a sentence for a config problem.
    pub fn parse(text: &str) -> Result<Recipient, String> {
        let text = text.trim();
        let key = if text.starts_with("age1") && !text.contains(char::is_whitespace) {
            match text.parse::<age::x25519::Recipient>() {
                Ok(k) => Key::X25519(k),
                Err(_) if text.starts_with("age1pq") || text.starts_with("age1tag") => {
                    return Err(unsupported(text));
                }
                Err(_) if text.len() > 62 => return Err(unsupported(text)),
                Err(e) => {
                    return Err(format!(
                        "{} is not an age X25519 recipient: {e}",
                        shown(text)
                    ));
                }
            }
        } else if text.starts_with("ssh-") {
            match text.parse::<age::ssh::Recipient>() {
                Ok(k) => Key::Ssh(Box::new(k)),
                Err(e) => {
                    return Err(format!(
                        "{} is not a usable SSH public key: {}",
                        shown(text),
                        ssh_error(e)
                    ));
                }
            }
        } else {
            return Err(format!(
                "{} is not an age recipient: write an age X25519 key (age1…, from `age-keygen -y key.txt`) or an SSH public key (ssh-ed25519 AAAA… or ssh-rsa AAAA…)",
                shown(text)
            ));
        };
        Ok(Recipient {
            text: text.to_owned(),
            key,
        })
    }

    /// The key as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn as_age(&self) -> &dyn age::Recipient {
        match &self.key {
            Key::X25519(k) => k,
            Key::Ssh(k) => k.as_ref(),
        }
    }
}

/// The start of a key for a message: recipients are public, but a secret key pasted by
/// mistake must not end up in a log whole.
fn shown(text: &str) -> String {
    if text.starts_with("AGE-SECRET-KEY-") || text.contains("PRIVATE KEY") {
        return "(a secret key: give the public key, from `age-keygen -y`)".to_owned();
    }
    let start: String = text.chars().take(24).collect();
    if start.len() < text.len() {
        format!("{start:?}…")
    } else {
        format!("{start:?}")
    }
}

fn unsupported(text: &str) -> String {
    format!(
        "{} is a kind of age recipient this program does not encrypt to (post-quantum, tag or plugin keys); use an X25519 key (age1…) or an SSH key, which Debian's age can decrypt",
        shown(text)
    )
}

fn ssh_error(e: age::ssh::ParseRecipientKeyError) -> String {
    use age::ssh::ParseRecipientKeyError as E;
    match e {
        E::RsaModulusTooSmall => "its RSA key is shorter than 2048 bits".into(),
        E::RsaModulusTooLarge => "its RSA key is longer than age supports".into(),
        E::Unsupported(kind) => {
            format!("{kind} keys are not supported (use ssh-ed25519 or ssh-rsa)")
        }
        _ => "it is not an ssh-ed25519 or ssh-rsa public key".into(),
    }
}

/// The recipients of a server's archive: empty means not encrypted. Compared and shown
/// by their text (public keys).
#[derive(Clone, Default)]
pub struct Recipients(Vec<Recipient>);

impl Recipients {
    pub fn new(list: Vec<Recipient>) -> Self {
        Recipients(list)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// A writer that encrypts to every recipient into `out`.
    pub fn encrypt<W: io::Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = age::Encryptor::with_recipients(self.0.iter().map(Recipient::as_age))
            .map_err(|e| io::Error::other(format!("cannot set up the encryption: {e}")))?;
        encryptor.wrap_output(out)
    }
}

impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.text == b.text)
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| &r.text))
            .finish()
    }
}

/// The recipients of a recipients file (as `age -R` reads it): one per line, blank lines
/// and `#` comments skipped. An error names the line.
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(Recipient::parse(line).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

/// The identities in `path` (an age identity file, `AGE-SECRET-KEY-1…` lines, or an
/// unencrypted OpenSSH private key). The error names the file and says what is wrong,
/// never what it holds.
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
    let mut data = Vec::new();
    // An identity file is a few lines; a megabyte is plenty.
    io::BufReader::new(file)
        .take(1024 * 1024)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
    let text_start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if data[text_start..].starts_with(b"-----BEGIN") {
        let identity = age::ssh::Identity::from_buffer(&data[..], None)
            .map_err(|_| format!("{} is not an SSH private key age can read", path.display()))?;
        return match identity {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(identity)]),
            age::ssh::Identity::Encrypted(_) => Err(format!(
                "{} is a passphrase-protected SSH key; decrypt the archive with `age -d -i {}` instead, or give an unprotected copy",
                path.display(),
                path.display()
            )),
            age::ssh::Identity::Unsupported(_) => Err(format!(
                "{} is an SSH key of a kind age does not support (use ssh-ed25519 or ssh-rsa)",
                path.display()
            )),
        };
    }
    let file = age::IdentityFile::from_buffer(&data[..]).map_err(|e| {
        // age's message names the line, never its content.
        format!(
            "{}: {}",
            path.display(),
            e.to_string().replace("identity file ", "")
        )
    })?;
    let identities = file
        .into_identities()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if identities.is_empty() {
        return Err(format!(
            "{} holds no identity (an age identity file has AGE-SECRET-KEY-1… lines)",
            path.display()
        ));
    }
    Ok(identities
        .into_iter()
        .map(|i| i as Box<dyn age::Identity>)
        .collect())
}

/// A reader of the plaintext of an age file read from `input`, with `identities`.
pub fn decrypt<R: Read + BufRead>(
    input: R,
    identities: &[Box<dyn age::Identity>],
) -> Result<impl Read, String> {
    let decryptor =
        age::Decryptor::new_buffered(input).map_err(|e| format!("it is not an age file ({e})"))?;
    decryptor
        .decrypt(identities.iter().map(|i| i.as_ref()))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                "none of the identities given can decrypt it (it was encrypted to other recipients)"
                    .to_owned()
            }
            other => format!("it cannot be decrypted ({other})"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

    #[test]
    fn recipients_of_each_kind_are_read_and_the_rest_refused_by_name() {
        let x = age::x25519::Identity::generate().to_public().to_string();
        assert!(Recipient::parse(&x).is_ok());
        assert!(Recipient::parse(&format!("  {x} ")).is_ok());
        assert_eq!(Recipient::parse(ED25519).unwrap().as_str(), ED25519);
        let cases = [
            ("age1qqqq", "is not an age X25519 recipient"),
            ("AGE-SECRET-KEY-1QQQQ", "(a secret key: give the public key"),
            ("hello", "\"hello\" is not an age recipient"),
            (
                "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
                "is not a usable SSH public key",
            ),
        ];
        for (text, want) in cases {
            let e = Recipient::parse(text).err().unwrap();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = parse_recipients_file(&format!("# mine\n{x}\n\nnope\n"))
            .err()
            .unwrap();
        assert_eq!(e.0, 4);
    }

    #[test]
    fn an_archive_encrypted_here_decrypts_with_its_identity_only() {
        let me = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let to = Recipients::new(vec![Recipient::parse(&me.to_public().to_string()).unwrap()]);
        let mut out = Vec::new();
        let mut w = to.encrypt(&mut out).unwrap();
        io::Write::write_all(&mut w, b"PK\x03\x04 the export").unwrap();
        w.finish().unwrap();
        let mine: Vec<Box<dyn age::Identity>> = vec![Box::new(me)];
        let mut plain = Vec::new();
        decrypt(&out[..], &mine)
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"PK\x03\x04 the export");
        let theirs: Vec<Box<dyn age::Identity>> = vec![Box::new(other)];
        let e = decrypt(&out[..], &theirs).err().unwrap();
        assert!(
            e.starts_with("none of the identities given can decrypt it"),
            "{e}"
        );
    }
}
