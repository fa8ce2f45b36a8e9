//! Where the passphrase of the key file comes from: `CERCLE_PASSPHRASE` (for automation), or
//! a prompt on the terminal. Never from a command-line argument (it would show in `ps` and
//! in shell history), never logged.

use std::io::IsTerminal;

use zeroize::Zeroizing;

/// The environment variable that supplies the passphrase to scripts and services.
pub(crate) const ENV: &str = "CERCLE_PASSPHRASE";
/// The shortest passphrase accepted for a new key file, from a person or a script alike.
const MIN_CHARS: usize = 8;

fn from_env() -> Option<Zeroizing<String>> {
    std::env::var(ENV).ok().map(Zeroizing::new)
}

fn no_terminal() -> anyhow::Error {
    anyhow::anyhow!("a passphrase is needed and there is no terminal to ask it on: set {ENV}")
}

/// The passphrase to protect a new key file, asked twice on a terminal.
pub(crate) fn choose() -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = from_env() {
        anyhow::ensure!(
            p.chars().count() >= MIN_CHARS,
            "{ENV} is shorter than {MIN_CHARS} characters: choose a longer passphrase"
        );
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    let first = Zeroizing::new(rpassword::prompt_password(
        "Choose a passphrase for your keys: ",
    )?);
    anyhow::ensure!(
        first.chars().count() >= MIN_CHARS,
        "the passphrase must have at least {MIN_CHARS} characters"
    );
    let again = Zeroizing::new(rpassword::prompt_password("Type it again: ")?);
    anyhow::ensure!(
        *first == *again,
        "the two passphrases differ: run the command again"
    );
    Ok(first)
}

/// The passphrase that opens the existing key file.
pub(crate) fn ask() -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    Ok(Zeroizing::new(rpassword::prompt_password("Passphrase: ")?))
}

/// The full identity of `home`, unlocking its key file (no question for demo homes).
pub(crate) fn unlock(home: &cercle_node::Home) -> anyhow::Result<cercle_node::LocalIdentity> {
    home.identity()?;
    let pass = if home.is_insecure()? {
        Zeroizing::new(String::new())
    } else {
        ask()?
    };
    Ok(home.unlock(&pass)?)
}
