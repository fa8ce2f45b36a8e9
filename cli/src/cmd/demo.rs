//! `cercle demo`: a care team on this machine, to see Cercle at work in a browser.
//!
//! Starts, as separate processes on loopback, a relay and one node per member (GP, home
//! nurse, physiotherapist, family caregiver, then a pharmacist and a social worker with
//! `--members`), each in its own home under one temporary directory. The GP's node creates
//! the circle around a demo patient (verified identity, consent, problems, treatment, task,
//! care plan), adds the others and names the relay; every other member's node receives the
//! circle through the relay and the network like any member's would. The members then write
//! a few days of notebook entries (an alert among them) and messages through their own
//! node's API. One line per member gives the URL of their web UI, logged in. Ctrl-C stops
//! the team and removes the directory (unless `--keep`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cercle_crdt::{EntryKind, Role, Vitals};
use cercle_node::api::ApiFile;
use cercle_node::node::offline::OfflineNode;
use cercle_node::ops::circles::{CircleAccept, CircleCreate, CircleList};
use cercle_node::ops::members::MemberAdd;
use cercle_node::ops::messages::MsgSend;
use cercle_node::ops::notes::NoteAdd;
use cercle_node::ops::patient::{ItemAdd, PatientChange, PatientList, PatientSet};
use cercle_node::ops::relays::RelaysSet;
use cercle_node::ops::tasks::TaskAdd;
use cercle_node::{Home, KdfParams, LocalIdentity, Profile};
use serde::Serialize;

use crate::Context;
use crate::backend::Client;
use crate::output::now;

/// The whole team must be up within this time.
const READY_WITHIN: Duration = Duration::from_secs(25);
const HOUR: i64 = 3_600_000;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// How many members the care team has (2 to 6).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=6))]
    members: u8,
    /// Keep the demo's directory (homes, logs) after Ctrl-C.
    #[arg(long)]
    keep: bool,
}

/// One member of the demo team.
struct Member {
    slug: &'static str,
    name: &'static str,
    profession: &'static str,
    rpps: Option<&'static str>,
    role: Role,
}

const TEAM: [Member; 6] = [
    Member {
        slug: "medecin",
        name: "Dr Claire Martin",
        profession: "médecin généraliste",
        rpps: Some("10003456786"),
        role: Role::Coordinator,
    },
    Member {
        slug: "infirmier",
        name: "Julien Moreau",
        profession: "infirmier libéral",
        rpps: None,
        role: Role::Professional,
    },
    Member {
        slug: "kine",
        name: "Sophie Lambert",
        profession: "masseur-kinésithérapeute",
        rpps: None,
        role: Role::Professional,
    },
    Member {
        slug: "aidante",
        name: "Marie Durand",
        profession: "aidante (fille de la patiente)",
        rpps: None,
        role: Role::Caregiver,
    },
    Member {
        slug: "pharmacien",
        name: "Paul Girard",
        profession: "pharmacien",
        rpps: None,
        role: Role::Professional,
    },
    Member {
        slug: "social",
        name: "Nadia Benali",
        profession: "assistante sociale",
        rpps: None,
        role: Role::Observer,
    },
];

/// What is printed per member.
#[derive(Debug, Serialize)]
struct MemberLine {
    name: String,
    role: String,
    profession: String,
    url: String,
    /// The member's home: `cercle --home HOME ...` acts as this member.
    home: PathBuf,
    /// The demo patient's circle.
    circle: String,
}

/// The processes of the demo, stopped (and the directory removed) when dropped.
struct Team {
    dir: PathBuf,
    keep: bool,
    children: Vec<Child>,
}

impl Drop for Team {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SIGTERM first: each node flushes its store and removes its api.json.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            tracing::info!(dir = %self.dir.display(), "demo directory kept");
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Team {
    /// Starts `cercle ARGS` with its output in `log`.
    fn spawn(&mut self, args: &[&str], log: &Path, stdout: Stdio) -> anyhow::Result<usize> {
        let exe = std::env::current_exe()?;
        let err = std::fs::File::create(log)?;
        let child = Command::new(exe)
            .args(args)
            // The team ignores the user's own settings.
            .env(crate::config::ENV, self.dir.join("config.toml"))
            .env("CERCLE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start a demo process: {e}"))?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }
}

pub(crate) fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("cercle-demo-{}", now().millis()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut team = Team {
        dir: dir.clone(),
        keep: args.keep,
        children: Vec::new(),
    };
    let relay = start_relay(&mut team)?;
    let members = &TEAM[..usize::from(args.members)];

    // Identities, each in its own home (without passphrase: a demo).
    let mut homes = Vec::new();
    for m in members {
        let home = Home::at(dir.join(m.slug));
        let profile = Profile::new(m.name, m.profession, m.rpps, None)?;
        let identity = LocalIdentity::generate(profile, now())?;
        home.init(&identity, None, KdfParams::FAST_INSECURE)?;
        homes.push((home, identity));
    }
    let circle = create_circle(&homes, members, &relay)?;

    // The GP's node first, then the others, told where the GP and the relay are.
    let node_args = |home: &Home| -> Vec<String> {
        vec![
            "--home".into(),
            home.root().display().to_string(),
            "up".into(),
            "--no-mdns".into(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--relay".into(),
            relay.clone(),
        ]
    };
    let gp_home = &homes[0].0;
    let a = node_args(gp_home);
    team.spawn(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("medecin.log"),
        Stdio::null(),
    )?;
    let gp = wait_for_node(ctx, gp_home, started)?;
    // The API answers before the network has reported its listen address: wait for it, or
    // the others would have only the relay to find the GP through.
    let gp_address = loop {
        let status = gp.ask(cercle_node::ops::status::Status {})?;
        if let Some(a) = status.addresses.into_iter().find(|a| a.contains("/tcp/")) {
            break a;
        }
        if started.elapsed() > READY_WITHIN {
            anyhow::bail!("the GP's node has no address; see {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (m, (home, _)) in members.iter().zip(&homes).skip(1) {
        let mut a = node_args(home);
        a.extend(["--peer".to_string(), gp_address.clone()]);
        team.spawn(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.join(format!("{}.log", m.slug)),
            Stdio::null(),
        )?;
    }
    let mut clients = vec![gp];
    for (home, _) in homes.iter().skip(1) {
        clients.push(wait_for_node(ctx, home, started)?);
    }
    // Every member's node holds the circle once it came through the network.
    for (client, m) in clients.iter().zip(members) {
        wait_for_circle(client, &circle, m.name, started)?;
    }
    write_team_entries(&clients, members, &circle)?;

    let mut lines = Vec::new();
    for ((home, _), m) in homes.iter().zip(members) {
        let api = ApiFile::read(home.root())?
            .ok_or_else(|| anyhow::anyhow!("{}'s node stopped", m.name))?;
        lines.push(MemberLine {
            name: m.name.into(),
            role: m.role.as_str().into(),
            profession: m.profession.into(),
            url: crate::cmd::up::ui_url(&api),
            home: home.root().to_path_buf(),
            circle: circle.clone(),
        });
    }
    if ctx.json {
        for l in &lines {
            println!("{}", serde_json::to_string(l)?);
        }
    } else {
        println!(
            "Demo care team for Jeanne Durand, up in {:.1} s ({} nodes and a relay on this machine):\n",
            started.elapsed().as_secs_f64(),
            lines.len()
        );
        for l in &lines {
            println!("  {:<18} {:<13} {}", l.name, l.role, l.url);
        }
        println!(
            "\nOpen a URL to see that member's web UI. The circle is {circle}; act as a member \
             from a terminal with `cercle --home HOME ...`, HOME one of:"
        );
        for l in &lines {
            println!("  {:<18} {}", l.name, l.home.display());
        }
        println!(
            "Data and logs: {}\nCtrl-C stops the team{}.",
            dir.display(),
            if args.keep {
                " (the directory is kept)"
            } else {
                " and removes the directory"
            }
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let watch = async {
            // The team's processes are checked now and then: a crashed node ends the demo.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if team
                    .children
                    .iter_mut()
                    .any(|c| matches!(c.try_wait(), Ok(Some(_))))
                {
                    break;
                }
            }
        };
        tokio::select! {
            () = crate::cmd::up::shutdown_signal() => {}
            () = watch => tracing::warn!("a process of the demo team stopped; stopping the others"),
        }
    });
    drop(team);
    Ok(())
}

/// Starts the relay and returns its TCP address.
fn start_relay(team: &mut Team) -> anyhow::Result<String> {
    let home = team.dir.join("relais");
    std::fs::create_dir_all(&home)?;
    let home_arg = home.display().to_string();
    let i = team.spawn(
        &[
            "--home",
            &home_arg,
            "--json",
            "relay",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
        &team.dir.join("relais.log"),
        Stdio::piped(),
    )?;
    let stdout = team.children[i]
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("the relay's output is not readable"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let ready: cercle_node::relay::RelayReady = serde_json::from_str(&line)
        .map_err(|_| anyhow::anyhow!("the demo relay did not start; see {}", home.display()))?;
    ready
        .addresses
        .into_iter()
        .find(|a| a.contains("/tcp/"))
        .ok_or_else(|| anyhow::anyhow!("the demo relay has no TCP address"))
}

/// The circle, made in the GP's home before the GP's node starts, through the same
/// operations the CLI uses: patient file, the GP's first note, the other members, and the
/// relay.
fn create_circle(
    homes: &[(Home, LocalIdentity)],
    members: &[Member],
    relay: &str,
) -> anyhow::Result<String> {
    let (home, gp) = &homes[0];
    let store: std::sync::Arc<dyn cercle_node::store::Store> =
        std::sync::Arc::new(home.open_store(gp)?);
    let peer = cercle_node::net::keypair(gp)?.public().to_peer_id();
    let me = LocalIdentity::from_secrets(&gp.secrets(), gp.public())?;
    let mut node = OfflineNode::open(store, me, peer.to_string())?;
    let start = now().millis() - 4 * 24 * HOUR;
    let create = CircleCreate {
        patient: "Jeanne Durand".into(),
        birth_date: Some("1941-05-12".into()),
        family_name: None,
        given_names: None,
        team: None,
    };
    let circle = node.ask(create)?.circles[0].id.clone();
    let change = PatientChange {
        sex: Some("female".into()),
        address: Some("12 rue des Tilleuls, 23000 Guéret".into()),
        phone: Some("05 55 41 22 10".into()),
        verify: true,
        verified_with: Some(cercle_crdt::IdentityDocument::IdCard),
        consent: Some("given".into()),
        consent_scope: Some("équipe de soins à domicile".into()),
        care_plan: Some(
            "Pansement du talon un jour sur deux; pesée quotidienne; kinésithérapie deux fois par semaine."
                .into(),
        ),
        ..PatientChange::default()
    };
    node.ask(PatientSet {
        circle: circle.clone(),
        change: Box::new(change),
    })?;
    for (list, fields) in [
        (
            PatientList::Problems,
            &[("label", "Insuffisance cardiaque"), ("status", "active")][..],
        ),
        (
            PatientList::Problems,
            &[("label", "Ulcère du talon droit"), ("status", "active")],
        ),
        (
            PatientList::Allergies,
            &[
                ("substance", "Pénicilline"),
                ("severity", "severe"),
                ("criticality", "high"),
            ],
        ),
        (
            PatientList::Medications,
            &[("name", "Furosémide 40 mg"), ("frequency", "1 le matin")],
        ),
        (
            PatientList::Contacts,
            &[
                ("name", "Sophie Durand"),
                ("role", "trusted_person"),
                ("relation", "fille"),
                ("phone", "06 12 34 56 78"),
            ],
        ),
    ] {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        node.ask(ItemAdd {
            circle: circle.clone(),
            list,
            fields,
        })?;
    }
    node.ask(TaskAdd {
        circle: circle.clone(),
        title: "Renouveler l'ordonnance de soins infirmiers".into(),
        owner: None,
        due: None,
    })?;
    node.ask(NoteAdd {
        circle: circle.clone(),
        texts: vec![
            "Première visite: patiente fatiguée mais souriante, œdèmes des chevilles.".into(),
        ],
        kind: EntryKind::Observation,
        at: Some(start + 2 * HOUR),
        vitals: None,
        to: None,
    })?;
    for ((_, identity), m) in homes.iter().zip(members).skip(1) {
        node.ask(MemberAdd {
            circle: circle.clone(),
            card: identity.public().card(&[]).encode(),
            role: m.role,
        })?;
    }
    node.ask(RelaysSet {
        circle: circle.clone(),
        relays: vec![relay.to_string()],
    })?;
    Ok(circle)
}

/// Waits for a member's node to answer on its API.
fn wait_for_node(ctx: &Context, home: &Home, started: Instant) -> anyhow::Result<Client> {
    let member_ctx = Context {
        home: home.clone(),
        json: ctx.json,
    };
    loop {
        if let Some(c) = Client::running(&member_ctx)? {
            return Ok(c);
        }
        if started.elapsed() > READY_WITHIN {
            anyhow::bail!(
                "a demo node did not start within {} s; see the logs in {}",
                READY_WITHIN.as_secs(),
                home.root()
                    .parent()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the member's node holds the circle: added by the GP, it comes as an
/// invitation, which the demo's member accepts.
fn wait_for_circle(
    client: &Client,
    circle: &str,
    name: &str,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        let list = client.ask(CircleList {})?;
        if list.circles.iter().any(|c| c.id == circle) {
            return Ok(());
        }
        if list.invitations.iter().any(|i| i.circle == circle) {
            client.ask(CircleAccept {
                circle: circle.to_string(),
                always: false,
            })?;
            continue;
        }
        if started.elapsed() > READY_WITHIN {
            anyhow::bail!(
                "{name}'s node did not receive the circle within {} s",
                READY_WITHIN.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A few days of the team's work, each written by its author's own node.
fn write_team_entries(clients: &[Client], members: &[Member], circle: &str) -> anyhow::Result<()> {
    let start = now().millis() - 4 * 24 * HOUR;
    let write = |who: usize, hours: i64, kind: EntryKind, text: &str, vitals: Option<Vitals>| {
        let Some(client) = clients.get(who) else {
            return Ok(());
        };
        client.ask(NoteAdd {
            circle: circle.into(),
            texts: vec![text.into()],
            kind,
            at: Some(start + hours * HOUR),
            vitals,
            to: None,
        })?;
        anyhow::Ok(())
    };
    let note =
        |who: usize, hours: i64, kind: EntryKind, text: &str| write(who, hours, kind, text, None);
    let message = |who: usize, text: &str| -> anyhow::Result<()> {
        let Some(client) = clients.get(who) else {
            return Ok(());
        };
        client.ask(MsgSend {
            circle: circle.into(),
            text: text.into(),
            attachments: Vec::new(),
        })?;
        Ok(())
    };
    note(
        1,
        9,
        EntryKind::Care,
        "Pansement du talon refait, plaie propre, pas de signe d'infection.",
    )?;
    let morning = Vitals {
        systolic: Some(132),
        diastolic: Some(78),
        heart_rate: Some(84),
        weight_kg: Some(61.4),
        ..Vitals::default()
    };
    write(1, 33, EntryKind::Vitals, "", Some(morning))?;
    note(
        2,
        50,
        EntryKind::Care,
        "Séance de kinésithérapie: marche de 10 minutes avec déambulateur, bonne tolérance.",
    )?;
    note(
        1,
        57,
        EntryKind::Handover,
        "Pour l'IDE de demain: surveiller le poids, +1,2 kg en deux jours.",
    )?;
    note(
        1,
        81,
        EntryKind::Alert,
        "Prise de poids de 2 kg en 3 jours et essoufflement: appeler le médecin traitant.",
    )?;
    message(
        3,
        "Maman a mal dormi cette nuit, elle dit être essoufflée en montant l'escalier.",
    )?;
    message(
        0,
        "Je passe demain en fin de matinée. Merci de noter le poids chaque matin.",
    )?;
    if members.len() > 4 {
        message(
            4,
            "Le renouvellement de Furosémide est prêt à la pharmacie.",
        )?;
    }
    Ok(())
}
