from fastapi import FastAPI


def mount_web(app: FastAPI) -> None:
    return None
