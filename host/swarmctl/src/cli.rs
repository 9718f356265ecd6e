//! The command line: global flags and every command, as clap derive structs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::parse;

/// Where `swarmd` puts its control socket by default (`<state-dir>/swarmd.sock`).
pub const DEFAULT_SOCKET: &str = "./swarmkitstate/swarmd.sock";

/// Drive a swarm cluster through the control API of one of its managers.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version, max_term_width = 100)]
pub struct Cli {
    /// The manager's control socket.
    #[arg(short = 's', long, env = "SWARM_SOCKET", default_value = DEFAULT_SOCKET, global = true, value_name = "PATH", display_order = 900)]
    pub socket: PathBuf,

    /// Output of list and inspect commands: tables for people or JSON for programs.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true, display_order = 900)]
    pub format: Format,

    /// Log filter for swarmctl's own diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, default_value = "warn", value_parser = parse::log_filter, global = true, value_name = "LEVEL", display_order = 900)]
    pub log_level: String,

    /// How long to wait for the manager to answer one request.
    #[arg(long, default_value = "30s", value_parser = parse::duration, global = true, value_name = "DURATION", display_order = 900)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Manage the cluster's settings.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage the plugins installed in the cluster (executors, schedulers, discovery backends).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage secrets: data (at most 500 KiB) given to tasks as files, never shown again.
    #[command(subcommand)]
    Secret(DataCommand),
    /// Manage configs: data (at most 1000 KiB) given to tasks as files.
    #[command(subcommand)]
    Config(DataCommand),
    /// Print swarmctl's version.
    Version,
}

// ---- nodes -------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one node (NODE: id, unique id prefix or hostname).
    Inspect { node: String },
    /// Change a node's availability or labels.
    Update(NodeUpdateArgs),
    /// Let the scheduler place new tasks on a node (availability active).
    Activate { node: String },
    /// Stop placing new tasks on a node; its tasks keep running (availability pause).
    Pause { node: String },
    /// Move every task off a node (availability drain).
    Drain { node: String },
    /// Make nodes managers: each renews its certificate and joins raft.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers: each leaves raft, then runs as a worker. Refused for the last
    /// manager and when the remaining managers would not have a quorum.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster (a manager must be demoted first).
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Remove a node that is not down (its certificate is no longer admitted).
        #[arg(long, short)]
        force: bool,
    },
    /// Unlock this manager, locked at start (autolock) and waiting for its unlock key.
    Unlock {
        /// The unlock key (`SWMKEY-1-...`); read from standard input when absent.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

#[derive(Debug, Args)]
pub struct NodeUpdateArgs {
    /// Id, unique id prefix or hostname.
    pub node: String,
    #[arg(long, value_enum)]
    pub availability: Option<AvailabilityArg>,
    /// Add or replace a label.
    #[arg(long = "label-add", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub label_add: Vec<(String, String)>,
    /// Remove a label.
    #[arg(long = "label-rm", value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// The executor plugin for the node's new tasks (an installed plugin's name; "" for the
    /// node's default).
    #[arg(long, value_name = "PLUGIN")]
    pub executor: Option<String>,
}

// ---- services ----------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service.
    Create(Box<ServiceCreateArgs>),
    /// Change a service; only the flags given change.
    Update(Box<ServiceUpdateArgs>),
    /// Set the number of replicas: `scale web 3` or `scale web=3 api=2`.
    Scale {
        /// SERVICE REPLICAS, or one or more SERVICE=REPLICAS.
        #[arg(required = true, value_name = "SERVICE=REPLICAS")]
        targets: Vec<String>,
    },
    /// List services.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one service and its tasks (SERVICE: id, unique id prefix or name).
    Inspect { service: String },
    /// Remove services.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Replicated,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RestartConditionArg {
    None,
    OnFailure,
    Any,
}

/// Resource reservations (used by the scheduler) and limits.
#[derive(Debug, Default, Args)]
pub struct ResourceArgs {
    /// CPUs to reserve, e.g. 0.5.
    #[arg(long, value_name = "CPUS", value_parser = parse::nano_cpus)]
    pub reserve_cpu: Option<i64>,
    /// Memory to reserve, e.g. 512MiB (K, M, G, T are multiples of 1024, as in docker).
    #[arg(long, value_name = "SIZE", value_parser = parse::memory_bytes)]
    pub reserve_memory: Option<i64>,
    /// Most CPUs a task may use, e.g. 1.
    #[arg(long, value_name = "CPUS", value_parser = parse::nano_cpus)]
    pub limit_cpu: Option<i64>,
    /// Most memory a task may use, e.g. 1GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse::memory_bytes)]
    pub limit_memory: Option<i64>,
}

/// When and how ended tasks are replaced.
#[derive(Debug, Default, Args)]
pub struct RestartArgs {
    /// Restart on any exit (default), only on failure, or never.
    #[arg(long, value_enum)]
    pub restart_condition: Option<RestartConditionArg>,
    /// Wait between a task ending and its replacement (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub restart_delay: Option<Duration>,
    /// Most restarts within the window (default 0: unlimited).
    #[arg(long, value_name = "N")]
    pub restart_max_attempts: Option<u64>,
    /// The window restarts are counted over (default 0: the service's lifetime).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub restart_window: Option<Duration>,
}

/// What the tasks run: a host process, a WASI component or a container.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RuntimeChoice {
    /// Run a host process: the arguments after `--` are the command and its arguments.
    #[arg(long)]
    pub process: bool,
    /// Run a WASI component (a local .wasm file); the arguments after `--` are its arguments.
    #[arg(long, value_name = "FILE")]
    pub wasi: Option<PathBuf>,
    /// Run a container of this image (present on the nodes' engines); the arguments after `--`
    /// replace the image's command.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
}

/// Settings of container tasks (`--image`).
#[derive(Debug, Default, Args)]
pub struct ContainerArgs {
    /// Replace the image's entrypoint: a command and its arguments, split at spaces.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Mount into the container, e.g. type=bind,source=/srv,target=/data,readonly (also
    /// type=volume,source=NAME,target=PATH and type=tmpfs,target=PATH).
    #[arg(long = "mount", value_name = "MOUNT", value_parser = parse::mount)]
    pub mounts: Vec<swarm_types::Mount>,
    /// Label of the containers (keys starting with io.swarm. are reserved).
    #[arg(long = "container-label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub container_labels: Vec<(String, String)>,
    /// User the container runs as: USER, UID, USER:GROUP or UID:GID.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Host name inside the container.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

/// A change of runtime on update.
#[derive(Debug, Default, Args)]
#[group(required = false, multiple = false)]
pub struct RuntimeChange {
    /// Switch to a host process: the arguments after `--` are the command and its arguments.
    #[arg(long)]
    pub process: bool,
    /// Switch to a WASI component (a local .wasm file); the arguments after `--` are its arguments.
    #[arg(long, value_name = "FILE")]
    pub wasi: Option<PathBuf>,
    /// Switch to (or change) a container image; arguments after `--` replace its command.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
}

/// Changes to a container service.
#[derive(Debug, Default, Args)]
pub struct ContainerChange {
    /// Replace the entrypoint (a command and its arguments, split at spaces; "" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Add or replace (same target) a mount, e.g. type=bind,source=/srv,target=/data.
    #[arg(long = "mount-add", value_name = "MOUNT", value_parser = parse::mount)]
    pub mount_add: Vec<swarm_types::Mount>,
    /// Remove the mount at this target path.
    #[arg(long = "mount-rm", value_name = "TARGET")]
    pub mount_rm: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceCreateArgs {
    /// The service's name.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Replicated)]
    pub mode: ModeArg,
    /// Number of tasks of a replicated service (default 1).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u64>,
    /// Environment variable of the tasks.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse::env_var)]
    pub env: Vec<String>,
    /// Label of the service.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,
    /// Placement constraint, e.g. node.labels.zone==east.
    #[arg(long = "constraint", value_name = "EXPR", value_parser = parse::constraint)]
    pub constraints: Vec<String>,
    /// Give the tasks a secret as a file: NAME, or source=NAME,target=FILE. Processes find it
    /// in $SWARM_SECRETS_DIR, containers at /run/secrets/FILE.
    #[arg(long = "secret", value_name = "SECRET", value_parser = parse::file_ref)]
    pub secrets: Vec<swarm_types::FileRef>,
    /// Give the tasks a config as a file: NAME, or source=NAME,target=FILE. Processes find it
    /// in $SWARM_CONFIGS_DIR, containers at /FILE.
    #[arg(long = "config", value_name = "CONFIG", value_parser = parse::file_ref)]
    pub configs: Vec<swarm_types::FileRef>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub restart: RestartArgs,
    /// Most tasks of this service on one node (default 0: no limit).
    #[arg(long, value_name = "N")]
    pub max_replicas_per_node: Option<u64>,
    /// Working directory of a process (an absolute path on the node) or inside a container.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The executor plugin for the tasks (an installed plugin's name; default: each node's).
    #[arg(long, value_name = "PLUGIN")]
    pub executor: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeChoice,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// The command and its arguments (--process), the component's arguments (--wasi) or the
    /// container's command (--image).
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceUpdateArgs {
    /// Id, unique id prefix or name.
    pub service: String,
    /// Number of tasks of a replicated service.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u64>,
    /// Add or replace an environment variable.
    #[arg(long = "env-add", value_name = "KEY=VALUE", value_parser = parse::env_var)]
    pub env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long = "env-rm", value_name = "KEY")]
    pub env_rm: Vec<String>,
    /// Add or replace a label.
    #[arg(long = "label-add", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub label_add: Vec<(String, String)>,
    /// Remove a label.
    #[arg(long = "label-rm", value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long = "constraint-add", value_name = "EXPR", value_parser = parse::constraint)]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint (the same expression as shown by inspect).
    #[arg(long = "constraint-rm", value_name = "EXPR")]
    pub constraint_rm: Vec<String>,
    /// Add or replace (same file name) a secret: NAME, or source=NAME,target=FILE.
    #[arg(long = "secret-add", value_name = "SECRET", value_parser = parse::file_ref)]
    pub secret_add: Vec<swarm_types::FileRef>,
    /// Remove a secret (by its name).
    #[arg(long = "secret-rm", value_name = "NAME")]
    pub secret_rm: Vec<String>,
    /// Add or replace (same file name) a config: NAME, or source=NAME,target=FILE.
    #[arg(long = "config-add", value_name = "CONFIG", value_parser = parse::file_ref)]
    pub config_add: Vec<swarm_types::FileRef>,
    /// Remove a config (by its name).
    #[arg(long = "config-rm", value_name = "NAME")]
    pub config_rm: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub restart: RestartArgs,
    /// Most tasks of this service on one node (0: no limit).
    #[arg(long, value_name = "N")]
    pub max_replicas_per_node: Option<u64>,
    /// Working directory of a process (an absolute path on the node; "" clears it).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Roll the tasks out again even if nothing else changed.
    #[arg(long)]
    pub force: bool,
    /// The executor plugin for new tasks (an installed plugin's name; "" for each node's).
    #[arg(long, value_name = "PLUGIN")]
    pub executor: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeChange,
    #[command(flatten)]
    pub container: ContainerChange,
    /// New command and arguments (process), component arguments (wasi) or container command
    /// (container), after `--`.
    #[arg(value_name = "CMD", last = true)]
    pub args: Vec<String>,
}

// ---- tasks -------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks (by default those meant to run; --all adds history).
    #[command(visible_alias = "list")]
    Ls(TaskLsArgs),
    /// Show one task (TASK: id, unique id prefix or name like web.1).
    Inspect { task: String },
    /// Print the tail of a task's stdout (to stdout) and stderr (to stderr).
    Logs {
        task: String,
        /// How much of the end of each stream to fetch (default: the manager's, 64 KiB).
        #[arg(long, value_name = "N")]
        tail_bytes: Option<u64>,
    },
    /// Remove a task.
    #[command(visible_alias = "remove")]
    Rm { task: String },
}

#[derive(Debug, Args)]
pub struct TaskLsArgs {
    /// Only tasks of this service (id, unique id prefix or name).
    #[arg(long)]
    pub service: Option<String>,
    /// Only tasks on this node (id, unique id prefix or hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// Also show tasks that are not meant to run any more (history).
    #[arg(short = 'a', long)]
    pub all: bool,
}

// ---- cluster -----------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List clusters (there is one, named default).
    #[command(visible_alias = "list")]
    Ls,
    /// Show the cluster's settings.
    Inspect {
        #[arg(default_value = swarm_types::DEFAULT_CLUSTER_NAME)]
        cluster: String,
    },
    /// Change the cluster's settings.
    Update {
        #[arg(default_value = swarm_types::DEFAULT_CLUSTER_NAME)]
        cluster: String,
        /// Old tasks kept per slot.
        #[arg(long, value_name = "N")]
        task_history_limit: Option<u64>,
        /// How often agents heartbeat, e.g. 5s.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
        heartbeat_period: Option<Duration>,
        /// A node is DOWN after missing heartbeats for heartbeat period x this.
        #[arg(long, value_name = "N")]
        grace_multiplier: Option<u32>,
        /// Replace a join token: nodes that joined keep working, new joins need the new one.
        #[arg(long, value_name = "ROLE", value_parser = ["worker", "manager"])]
        rotate_join_token: Vec<String>,
        /// The scheduler plugin (an installed plugin's name; "" for the embedded default). It
        /// places tasks from the next scheduling pass.
        #[arg(long, value_name = "PLUGIN")]
        scheduler: Option<String>,
        /// Lock every manager's raft data with the cluster's unlock key (true) or stop (false);
        /// a restarted manager then waits for the key (`node unlock`).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        autolock: Option<bool>,
    },
    /// Show the cluster's unlock key (autolock); none while autolock is off.
    UnlockKey {
        /// Make a new unlock key first; every manager wraps its raft key with it, and the old
        /// one then stops working (a manager that was down needs the old one once).
        #[arg(long)]
        rotate: bool,
    },
}

// ---- secrets and configs -----------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Create one from a file ('-' reads standard input). It cannot be changed afterwards:
    /// create another under a new name and update the services.
    Create {
        /// Its name (letters, digits, '-' and '_'), as services refer to it.
        name: String,
        /// The file holding the data, or '-' for standard input.
        file: PathBuf,
        /// Label.
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
        labels: Vec<(String, String)>,
    },
    /// List them (never with their data).
    #[command(visible_alias = "list")]
    Ls,
    /// Show one (id, unique id prefix or name); a config's data is shown, a secret's never.
    Inspect { item: String },
    /// Remove them; refused while a service references one.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        items: Vec<String>,
    },
}

// ---- plugins -----------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a WebAssembly component cluster-wide; it is validated before it is stored.
    Install(PluginInstallArgs),
    /// List installed plugins.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one plugin (PLUGIN: id, unique id prefix or name).
    Inspect { plugin: String },
    /// Remove plugins; refused while the cluster, a service or a node uses one.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        plugins: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PluginKindArg {
    Executor,
    Scheduler,
    Discovery,
}

#[derive(Debug, Args)]
pub struct PluginInstallArgs {
    /// The world the component implements.
    #[arg(long, value_enum)]
    pub kind: PluginKindArg,
    /// The plugin's name (letters, digits, '-' and '_'), as services, nodes and the cluster
    /// refer to it.
    pub name: String,
    /// The component (.wasm), at most 16 MiB.
    pub file: PathBuf,
    /// Capabilities granted beyond log: process, wasi-runner, docker (executors), http
    /// (discovery). Comma-separated or repeated.
    #[arg(long, value_name = "CAPS", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Label of the plugin.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,
}
