from asyncchat.cli import run

run()
