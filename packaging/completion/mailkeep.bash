# SPDX-License-Identifier: MIT
# bash completion for mailkeep(1): commands, options, account names (read
# from the configuration file), and folders (from `mailkeep ls ACCOUNT
# --json`, which reads the local store only, never the network).
# Installed as /usr/share/bash-completion/completions/mailkeep; needs no
# helper from the bash-completion package.

# The configuration file the command line would use: -c/--config, else
# the same defaults as mailkeep.
_mailkeep_config()
{
	local i w
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-c | --config)
			w=${COMP_WORDS[i + 1]}
			[[ $w == "~/"* ]] && w=$HOME/${w#"~/"}
			printf '%s\n' "$w"
			return
			;;
		--config=*)
			printf '%s\n' "${w#--config=}"
			return
			;;
		-*) ;;
		*) break ;;
		esac
	done
	if [[ -n ${MAILKEEP_CONFIG-} ]]; then
		printf '%s\n' "$MAILKEEP_CONFIG"
	elif [[ ${XDG_CONFIG_HOME-} == /* ]]; then
		printf '%s\n' "$XDG_CONFIG_HOME/mailkeep/config"
	else
		printf '%s\n' "$HOME/.config/mailkeep/config"
	fi
}

# Account names: the [account NAME] sections of the configuration.
_mailkeep_accounts()
{
	local cfg
	cfg=$(_mailkeep_config)
	[[ -r $cfg ]] || return
	sed -n 's/^[[:space:]]*\[[[:space:]]*account[[:space:]]\{1,\}\([A-Za-z0-9._@+-]\{1,\}\)[[:space:]]*\][[:space:]]*$/\1/p' "$cfg"
}

# The folders of one account, as stored ("folder":"NAME" of ls --json).
_mailkeep_folders()
{
	local prog=${COMP_WORDS[0]} cfg
	[[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
	cfg=$(_mailkeep_config)
	command "$prog" -c "$cfg" ls --json "$1" 2>/dev/null |
		sed -n 's/.*"folder":"\(\([^"\\]\|\\.\)*\)".*/\1/p' |
		sed 's/\\"/"/g; s/\\\\/\\/g'
}

# Adds to COMPREPLY each of the newline-separated candidates in $1 that
# starts with $2 (the unquoted word), quoted for the shell.
_mailkeep_add()
{
	local c
	while IFS= read -r c; do
		[[ -n $c && $c == "$2"* ]] && COMPREPLY+=("$(printf '%q' "$c")")
	done <<<"$1"
}

# ACCOUNT, or ACCOUNT/FOLDER once a / is typed (with /UID after it for cat).
_mailkeep_paths()
{
	local cur=$1 acct a list=""
	if [[ $cur == */* ]]; then
		acct=${cur%%/*}
		local f
		while IFS= read -r f; do
			[[ -n $f ]] && list+="$acct/$f$2"$'\n'
		done <<<"$(_mailkeep_folders "$acct")"
		_mailkeep_add "$list" "$cur"
		compopt -o nospace 2>/dev/null
	else
		for a in $(_mailkeep_accounts); do
			list+="$a"$'\n'
		done
		_mailkeep_add "$list" "$cur"
		[[ $3 == slash ]] && { COMPREPLY=("${COMPREPLY[@]/%//}"); compopt -o nospace 2>/dev/null; }
	fi
}

_mailkeep()
{
	COMPREPLY=()
	local cur=${COMP_WORDS[COMP_CWORD]} prev=""
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	# the word as the shell will pass it: backslash escapes removed
	local ucur
	ucur=$(printf '%s' "$cur" | sed 's/\\\(.\)/\1/g')
	local commands="init check-config folders sync run status metrics ls cat export verify stats send
		sendmail outbox login token help"
	local globals="-c --config -v --verbose -q --quiet -V --version -h --help"

	# find the command: the first word that is not a global option
	local i cmd="" cmdi=0
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-c | --config) ((i++)) ;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]}
			cmdi=$i
			break
			;;
		esac
	done

	case $prev in
	-c | --config | --mbox)
		COMPREPLY=($(compgen -f -- "$cur"))
		compopt -o filenames 2>/dev/null
		return
		;;
	--maildir)
		COMPREPLY=($(compgen -d -- "$cur"))
		compopt -o filenames 2>/dev/null
		return
		;;
	esac

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$globals" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi

	local opts="" args=""
	case $cmd in
	init)
		case $prev in
		--provider)
			COMPREPLY=($(compgen -W "outlook office365 custom" -- "$cur"))
			return
			;;
		--email | --name | --client-id | --imap-host | --smtp-host | --pass-cmd) return ;;
		esac
		opts="--provider --email --name --client-id --imap-host --smtp-host --pass-cmd --force --help"
		;;
	check-config | run | metrics) opts="--help" ;;
	status | stats) opts="--json --help" ;;
	folders) opts="--json --trace --help" args=accounts ;;
	sync) opts="--quiet --trace --help" args=accounts ;;
	verify) opts="--server --help" args=accounts ;;
	login) opts="--refresh-only --help" args=accounts ;;
	token) opts="--help" args=accounts ;;
	ls) opts="--json --help" args=paths ;;
	cat) args=cat ;;
	export)
		if [[ $prev == --layout ]]; then
			COMPREPLY=($(compgen -W "maildir++ fs" -- "$cur"))
			return
		fi
		opts="--maildir --mbox --layout --help" args=paths
		;;
	send | sendmail)
		case $prev in
		-a | --account)
			_mailkeep_add "$(_mailkeep_accounts)" "$ucur"
			return
			;;
		-f | --from | --at | --in) return ;;
		esac
		if [[ $cmd == send ]]; then
			opts="-a --account --at --in -t -f --from --queue-only --allow-foreign-from --trace --help"
		else
			opts="-t -f -a -i -oi --help"
		fi
		;;
	outbox)
		if ((COMP_CWORD == cmdi + 1)) && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "ls show cancel retry flush rm" -- "$cur"))
			return
		fi
		if [[ $prev == -a || $prev == --account ]]; then
			_mailkeep_add "$(_mailkeep_accounts)" "$ucur"
			return
		fi
		opts="-a --account --json --trace --help"
		;;
	help)
		((COMP_CWORD == cmdi + 1)) && COMPREPLY=($(compgen -W "$commands config" -- "$cur"))
		return
		;;
	*) return ;;
	esac

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	case $args in
	accounts) _mailkeep_add "$(_mailkeep_accounts)" "$ucur" ;;
	paths) _mailkeep_paths "$ucur" "" ;;
	cat) _mailkeep_paths "$ucur" "/" slash ;;
	esac
}
complete -F _mailkeep mailkeep
