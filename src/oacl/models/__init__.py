"""oacl.models"""
