# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for nsidctl
_nsidctl() {
    local cur prev words cword
    _init_completion || return
    local commands="status list graph history watch resync reload metrics"
    case $prev in
        --socket)
            _filedir
            return
            ;;
        --json | -j)
            COMPREPLY=($(compgen -W "short pretty" -- "$cur"))
            return
            ;;
        -n)
            return
            ;;
        list)
            COMPREPLY=($(compgen -W "self $(ls /run/netns 2>/dev/null)" -- "$cur"))
            return
            ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--socket --json --json=short --json=pretty -j --no-legend
            --version --help -n" -- "$cur"))
        return
    fi
    local w
    for w in "${words[@]:1:cword-1}"; do
        [[ " $commands " == *" $w "* ]] && return
    done
    COMPREPLY=($(compgen -W "$commands" -- "$cur"))
}
complete -F _nsidctl nsidctl
