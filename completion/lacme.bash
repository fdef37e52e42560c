# bash completion of lacme(8) and lacme-accountd(1): options, commands,
# option values, and newOrder's sections, which lacme's own code reads from
# the configuration the command line names (--config=, --config-certs=).
# scripts/install puts it in $PREFIX/share/bash-completion/completions/, as
# lacme and as lacme-accountd, where bash-completion loads it on first use;
# without bash-completion, source it.  It needs nothing of bash-completion.
# shellcheck shell=bash

_LACME_PYTHON="@PYTHON@"
_LACME_OPTIONS=(--config= --socket= -q --quiet -v --verbose --debug -h --help --version)
_LACME_COMMANDS=(account newOrder new-order new-cert revokeCert revoke-cert status)
declare -A _LACME_COMMAND_OPTIONS=(
    [account]="--register --tos-agreed --deactivate --json --rollover= --rollover-socket="
    [newOrder]="--config-certs= --min-days= --force --dry-run --json"
    [revokeCert]="--reason="
    [status]="--config-certs= --json"
)
declare -A _LACME_ALIASES=([new-order]=newOrder [new-cert]=newOrder [revoke-cert]=revokeCert)
_LACME_REASONS=(unspecified keyCompromise cACompromise affiliationChanged superseded
    cessationOfOperation certificateHold removeFromCRL privilegeWithdrawn aACompromise)
_LACME_ACCOUNTD_OPTIONS=(--config= --privkey= --socket= --stdio -q --quiet --debug -h --help --version)

# The words up to the cursor, with what bash split at "=" and ":" (they are
# in COMP_WORDBREAKS) joined again, in _lacme_words; the current one in
# _lacme_cur, and in _lacme_prefix what of it bash keeps (its reply replaces
# only the last piece).  The callers declare these local.
_lacme_line() {
    local i word
    _lacme_words=()
    for ((i = 0; i <= COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if ((i > 1)) && [[ $word == [=:] || ${COMP_WORDS[i - 1]} == [=:] ]]; then
            _lacme_words[-1]+=$word
        else
            _lacme_words+=("$word")
        fi
    done
    _lacme_cur=${_lacme_words[-1]}
    _lacme_prefix=${_lacme_cur%"${COMP_WORDS[COMP_CWORD]}"}
}

# COMPREPLY: the CANDIDATES (whole words) that extend the current word.
_lacme_reply() {
    local candidate
    COMPREPLY=()
    for candidate; do
        if [[ $candidate == "$_lacme_cur"* ]]; then
            COMPREPLY+=("${candidate#"$_lacme_prefix"}")
        fi
    done
    # "--config=" and "file:" are continued, not ended by a space.
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=:] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

# COMPREPLY: the files whose names extend VALUE, as words starting with LEAD.
_lacme_files() {
    local lead=$1 value=$2 path paths=()
    compopt -o filenames 2>/dev/null
    while IFS= read -r path; do
        paths+=("$lead$path")
    done < <(compgen -f -- "$value")
    _lacme_reply "${paths[@]}"
}

# The value option that WORD is, without its value: "--config" for
# "--config" and "--config=...".
_lacme_value_option() {
    local word=$1 option
    shift
    for option; do
        if [[ $option == *= && ($word == "${option%=}" || $word == "$option"*) ]]; then
            echo "${option%=}"
            return 0
        fi
    done
    return 1
}

# The option whose value the current word may be, in _lacme_option: after
# "--option=" (then _lacme_lead is "--option="), or after "--option" alone
# (then _lacme_lead is empty); the value so far in _lacme_value.
_lacme_option_value() {
    local previous=${_lacme_words[-2]:-}
    _lacme_option= _lacme_value= _lacme_lead=
    if [[ $_lacme_cur == --*=* ]]; then
        _lacme_option=${_lacme_cur%%=*} _lacme_value=${_lacme_cur#*=}
        _lacme_lead=$_lacme_option=
    elif [[ $previous == --* && $previous != *=* ]] && ((${#_lacme_words[@]} > 2)); then
        _lacme_option=$previous _lacme_value=$_lacme_cur
    fi
}

# The sections lacme newOrder would read, given its configuration file and
# --config-certs= values (lacme's own reading: directories, specifiers and
# defaults as lacme has them; nothing when it can't read them).
_lacme_sections() {
    "$_LACME_PYTHON" -I -c '
import sys
from lacme import config
files = config.certificate_files(config.load(sys.argv[1] or None), sys.argv[2:])
print(*config.load_certs(files), sep="\n")
' "$@" 2>/dev/null
}

_lacme() {
    # The helpers' results: dynamic scope keeps them out of the shell.
    local _lacme_words _lacme_cur _lacme_prefix _lacme_option _lacme_value _lacme_lead
    local i word option value command="" config="" certs=() options seen=() names=()
    _lacme_line
    # The command, the configuration and what was given already; a value
    # option's value is the next word unless given with "=".
    for ((i = 1; i < ${#_lacme_words[@]} - 1; i++)); do
        word=${_lacme_words[i]}
        if [ "$word" = -- ]; then
            break
        elif option=$(_lacme_value_option "$word" "${_LACME_OPTIONS[@]}" --config-certs= \
            --min-days= --rollover= --rollover-socket= --reason=); then
            if [[ $word == *=* ]]; then
                value=${word#*=}
            else
                ((i += 1))
                value=${_lacme_words[i]}
            fi
            case $option in
                --config) config=$value ;;
                --config-certs) certs+=("$value") ;;
            esac
        elif [[ -n $word && $word != -* ]]; then
            if [ -z "$command" ]; then
                command=${_LACME_ALIASES[$word]:-$word}
            else
                seen+=("$word")
            fi
        fi
    done
    _lacme_option_value
    case $_lacme_option in
        --config | --socket | --config-certs | --rollover | --rollover-socket)
            _lacme_files "$_lacme_lead" "$_lacme_value"
            return 0
            ;;
        --reason)
            _lacme_reply "${_LACME_REASONS[@]/#/$_lacme_lead}"
            return 0
            ;;
        --min-days)
            COMPREPLY=()
            return 0
            ;;
    esac
    if [[ $_lacme_cur == -* ]]; then
        options=()
        if [ -n "$command" ]; then
            read -ra options <<<"${_LACME_COMMAND_OPTIONS[$command]:-}"
        fi
        _lacme_reply "${_LACME_OPTIONS[@]}" "${options[@]}"
    elif [ -z "$command" ]; then
        _lacme_reply "${_LACME_COMMANDS[@]}"
    elif [ "$command" = newOrder ] || [ "$command" = status ]; then
        while IFS= read -r word; do
            # Each section once.
            [[ " ${seen[*]} " == *" $word "* ]] || names+=("$word")
        done < <(_lacme_sections "$config" "${certs[@]}")
        _lacme_reply "${names[@]}"
    elif [ "$command" = revokeCert ]; then
        _lacme_files "" "$_lacme_cur"
    else
        COMPREPLY=()
    fi
}

_lacme_accountd() {
    local _lacme_words _lacme_cur _lacme_prefix _lacme_option _lacme_value _lacme_lead
    _lacme_line
    _lacme_option_value
    case $_lacme_option in
        --config | --socket) _lacme_files "$_lacme_lead" "$_lacme_value" ;;
        --privkey)
            # file:PATH or gpg:PATH
            if [[ $_lacme_value == file:* || $_lacme_value == gpg:* ]]; then
                _lacme_files "$_lacme_lead${_lacme_value%%:*}:" "${_lacme_value#*:}"
            else
                _lacme_reply "${_lacme_lead}file:" "${_lacme_lead}gpg:"
            fi
            ;;
        *) _lacme_reply "${_LACME_ACCOUNTD_OPTIONS[@]}" ;;
    esac
}

complete -F _lacme lacme
complete -F _lacme_accountd lacme-accountd
