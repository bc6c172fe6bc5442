# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rundock_global_optspecs
    string join \n h/help V/version
end

function __fish_rundock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rundock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rundock_using_subcommand
    set -l cmd (__fish_rundock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rundock -n "__fish_rundock_needs_command" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_needs_command" -s V -l version -d 'Print version'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "dns" -d 'Answer DNS queries for service names from the SkyDNS records in etcd'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "watch" -d 'Render templates from the live records of names, check, reload (a tree\'s services/watch/run, or a JSON watch spec file)'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "status" -d 'Show every rundock service on this host: runit, container, health, record'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "history" -d 'List the revisions of a service\'s spec kept on this host, newest first (the current one marked *): image and image id, when, by whom, how it ended'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "logs" -d 'Print a service\'s output as svlogd keeps it: the last lines, and with -f what follows'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "metrics" -d 'Serve every service\'s status as Prometheus metrics on GET /metrics'
complete -c rundock -n "__fish_rundock_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd -d 'etcd endpoints, comma-separated' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-api -d 'etcd API: v3 (JSON gateway) or v2 (legacy keys API)' -r -f -a "v3\t''
v2\t''"
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l prefix -d 'Key prefix the records live under' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l domain -d 'A domain to answer for (repeatable), e.g. s.prod.example.com' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l listen -d 'Address to listen on, UDP and TCP' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l ttl -d 'TTL of answers from records with neither their own ttl nor an etcd TTL (CoreDNS\'s default; rundock\'s announcer always writes one)' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l forward -d 'DNS server (IP or IP:PORT) for names outside the domains; without it they are REFUSED' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l allow -d 'A client network forwarded for (repeatable), e.g. 10.0.0.0/8. Loopback clients always are; other clients get in-zone answers only (REFUSED for other names)' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l max-forwards -d 'Forwarded queries in flight at most; beyond it a forward is REFUSED at once' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l max-tcp-connections -d 'Open TCP connections at most; beyond it the oldest idle one is closed' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-ca-file -d 'CA bundle to verify etcd\'s certificate' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-cert-file -d 'Client certificate for etcd (with --etcd-key-file)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-key-file -d 'Client key for etcd (with --etcd-cert-file)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-username -d 'etcd user (with --etcd-password-file)' -r
complete -c rundock -n "__fish_rundock_using_subcommand dns" -l etcd-password-file -d 'File holding the etcd password (a file, so it never shows in the process list)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand dns" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_using_subcommand watch" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_using_subcommand status" -l sv-dir -d 'Where the service trees live (the module\'s sv_dir default)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand status" -l json -d 'Print JSON (a list of service objects) instead of a table'
complete -c rundock -n "__fish_rundock_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rundock -n "__fish_rundock_using_subcommand history" -l sv-dir -d 'Where the service trees live (the module\'s sv_dir default)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand history" -l limit -d 'With --all-hosts: how many of the newest entries to read (1-1000)' -r
complete -c rundock -n "__fish_rundock_using_subcommand history" -l json -d 'Print JSON (`{current, revisions}`, specs with secrets masked) instead of a table'
complete -c rundock -n "__fish_rundock_using_subcommand history" -l all-hosts -d 'Show the audit trail of every host instead (announced services): who changed what, where, when, from which image to which and how it ended, read from the etcd of the service\'s tree here'
complete -c rundock -n "__fish_rundock_using_subcommand history" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_using_subcommand logs" -s n -l lines -d 'How many of the last lines to print first (at most 10000)' -r
complete -c rundock -n "__fish_rundock_using_subcommand logs" -l stream -d 'Whose output: the container\'s, the announcer\'s or the watch\'s' -r -f -a "container\t''
announce\t''
watch\t''"
complete -c rundock -n "__fish_rundock_using_subcommand logs" -l sv-dir -d 'Where the service trees live' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand logs" -s f -l follow -d 'Keep printing what the service writes from now on, across svlogd\'s rotations'
complete -c rundock -n "__fish_rundock_using_subcommand logs" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_using_subcommand metrics" -l listen -d 'The address to serve on, e.g. 127.0.0.1:9323 (required: nothing is bound unless asked)' -r
complete -c rundock -n "__fish_rundock_using_subcommand metrics" -l sv-dir -d 'Where the service trees live (the module\'s sv_dir default)' -r -F
complete -c rundock -n "__fish_rundock_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "dns" -d 'Answer DNS queries for service names from the SkyDNS records in etcd'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "watch" -d 'Render templates from the live records of names, check, reload (a tree\'s services/watch/run, or a JSON watch spec file)'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "status" -d 'Show every rundock service on this host: runit, container, health, record'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "history" -d 'List the revisions of a service\'s spec kept on this host, newest first (the current one marked *): image and image id, when, by whom, how it ended'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "logs" -d 'Print a service\'s output as svlogd keeps it: the last lines, and with -f what follows'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "metrics" -d 'Serve every service\'s status as Prometheus metrics on GET /metrics'
complete -c rundock -n "__fish_rundock_using_subcommand help; and not __fish_seen_subcommand_from dns watch status history logs metrics help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
