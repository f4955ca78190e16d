"""oacl.train"""
